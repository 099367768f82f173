"""The engine flags every model-using command shares, added once by a decorator.

    @with_engine_options
    def main(input: InputOpt, ..., engine: EngineArgs) -> None:
        with engine.build("tagging") as llm: ...

The decorator appends --model, --cache-dir, --no-cache, --seed, --eager/--compiled, --dtype,
--max-model-len, --tensor-parallel-size, --gpu-memory-utilization, --quantization, --schedule,
--piece-size and the
Ray scale-out flags (--ray, --ray-address, --replicas, --cpus-per-replica, --gpus-per-replica,
--ray-temp-dir) to the command and hands the function one `EngineArgs` in their place. `--ray` is a plain
switch and the address
its own flag, because an option with an optional value does not parse reliably in typer/click.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Optional

from instructforge import options as opt


@dataclass(frozen=True)
class EngineArgs:
    model: str = "default"
    cache_dir: Optional[Path] = None
    no_cache: bool = False
    seed: int = 0
    eager: bool = True
    dtype: str = "auto"
    max_model_len: Optional[int] = None
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    quantization: Optional[str] = None
    schedule: Optional[opt.Schedule] = None
    piece_size: int = 256
    ray: bool = False
    ray_address: Optional[str] = None
    replicas: int = 1
    cpus_per_replica: Optional[float] = None
    gpus_per_replica: Optional[float] = None
    ray_temp_dir: Optional[Path] = None

    @property
    def uses_ray(self) -> bool:
        return self.ray or self.ray_address is not None

    def build(self, progress_desc: str = "generating"):
        """An Engine with these settings (the model itself starts on the first uncached request)."""
        from engine.backends.ray_options import RayOptions
        from engine.engine import Engine
        from engine.errors import ConfigError

        scale_out = RayOptions(
            replicas=self.replicas,
            cpus_per_replica=self.cpus_per_replica,
            gpus_per_replica=self.gpus_per_replica,
            address=self.ray_address,
            temp_dir=str(self.ray_temp_dir) if self.ray_temp_dir else None,
        )
        if not self.uses_ray:  # a scale-out flag without --ray would silently run one in-process engine
            flags = {
                "--replicas": self.replicas != 1,
                "--cpus-per-replica": self.cpus_per_replica is not None,
                "--gpus-per-replica": self.gpus_per_replica is not None,
                "--ray-temp-dir": self.ray_temp_dir is not None,
            }
            given = [flag for flag, used in flags.items() if used]
            if given:
                raise ConfigError(
                    f"{', '.join(given)} only apply on Ray: add --ray (a local cluster) or "
                    "--ray-address HOST:PORT.",
                    parameter=given[0],
                    value=True,
                )
            scale_out = RayOptions()
        return Engine(
            self.model,
            backend="ray" if self.uses_ray else "vllm",
            cache_dir=self.cache_dir,
            use_cache=not self.no_cache,
            progress_desc=progress_desc,
            seed=self.seed,
            enforce_eager=self.eager,
            dtype=self.dtype,
            max_model_len=self.max_model_len,
            tensor_parallel_size=self.tensor_parallel_size,
            gpu_memory_utilization=self.gpu_memory_utilization,
            quantization=self.quantization,
            piece_size=self.piece_size,
            schedule=self.schedule.value if self.schedule else None,
            ray=scale_out,
        )

    def to_config(self) -> dict[str, Any]:
        """For manifests."""

        def plain(value: Any) -> Any:
            return str(value) if isinstance(value, Path) else getattr(value, "value", value)

        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}


_ANNOTATIONS = {
    "model": opt.ModelOpt,
    "cache_dir": opt.CacheDirOpt,
    "no_cache": opt.NoCacheOpt,
    "seed": opt.SeedOpt,
    "eager": opt.EagerOpt,
    "dtype": opt.DtypeOpt,
    "max_model_len": opt.MaxModelLenOpt,
    "tensor_parallel_size": opt.TensorParallelOpt,
    "gpu_memory_utilization": opt.GpuMemoryOpt,
    "quantization": opt.QuantizationOpt,
    "schedule": opt.ScheduleOpt,
    "piece_size": opt.PieceSizeOpt,
    "ray": opt.RayOpt,
    "ray_address": opt.RayAddressOpt,
    "replicas": opt.ReplicasOpt,
    "cpus_per_replica": opt.CpusPerReplicaOpt,
    "gpus_per_replica": opt.GpusPerReplicaOpt,
    "ray_temp_dir": opt.RayTempDirOpt,
}


def with_engine_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Replace the `engine: EngineArgs` parameter of a typer command with the shared engine flags."""
    signature = inspect.signature(func)
    own = [p for name, p in signature.parameters.items() if name != "engine"]
    added = [
        inspect.Parameter(
            f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=_ANNOTATIONS[f.name]
        )
        for f in fields(EngineArgs)
    ]
    names = [f.name for f in fields(EngineArgs)]

    @functools.wraps(func)
    def command(*args: Any, **kwargs: Any) -> Any:
        engine = EngineArgs(**{name: kwargs.pop(name) for name in names if name in kwargs})
        return func(*args, engine=engine, **kwargs)

    hints = {k: v for k, v in inspect.get_annotations(func, eval_str=True).items() if k != "engine"}
    command.__annotations__ = {**hints, **_ANNOTATIONS}
    command.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p.replace(annotation=hints.get(p.name, p.annotation)) for p in own] + added
    )
    del command.__wrapped__  # typer must read the new signature, not the wrapped one
    return command
