"""Options shared by several commands, defined once (as `Annotated` aliases) so they read the same
everywhere."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        envvar="INSTRUCTFORGE_MODEL",
        help="A local Hugging Face model folder or a hub id already in your HF cache. "
        "`default` = the embedded SmolLM2-135M-Instruct.",
    ),
]
CacheDirOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--cache-dir",
        envvar="INSTRUCTFORGE_CACHE_DIR",
        help="Request-cache and model-cache folder (default: ~/.cache/instructforge).",
    ),
]
NoCacheOpt = Annotated[
    bool,
    typer.Option(
        "--no-cache", help="Neither read nor write the request cache: every request goes to the model."
    ),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for sampling and every random choice.")]
OutDirOpt = Annotated[
    Path, typer.Option("--out", help="Run directory: outputs, manifest.json and report.json go here.")
]
InputOpt = Annotated[
    Path,
    typer.Option("--input", "-i", help="Input file: .jsonl, .json, .csv, .parquet or a `datasets` folder."),
]
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="Output JSONL file (written atomically).")]
TemperatureOpt = Annotated[
    float, typer.Option("--temperature", min=0.0, help="Sampling temperature; 0 = greedy.")
]
MaxTokensOpt = Annotated[
    int, typer.Option("--max-tokens", min=1, help="Most tokens to generate per completion.")
]
EagerOpt = Annotated[
    bool,
    typer.Option(
        "--eager/--compiled",
        help="vLLM eager mode starts fast (~19 s on CPU); compiled mode starts slower and runs ~25% faster.",
    ),
]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="Model dtype: auto, bfloat16, float16, float32.")]
MaxModelLenOpt = Annotated[
    Optional[int],
    typer.Option("--max-model-len", help="Context length to serve (default: the model's, capped at 4096)."),
]
TensorParallelOpt = Annotated[
    int, typer.Option("--tensor-parallel-size", help="GPUs per engine (tensor parallel).")
]
GpuMemoryOpt = Annotated[
    float, typer.Option("--gpu-memory-utilization", help="Fraction of GPU memory vLLM may use.")
]
QuantizationOpt = Annotated[
    Optional[str],
    typer.Option("--quantization", help="vLLM quantization method (e.g. awq, gptq, fp8); default: none."),
]


class Schedule(str, Enum):
    """How batches meet the model (engine/backends/base.py SCHEDULES)."""

    deterministic = "deterministic"
    throughput = "throughput"


ScheduleOpt = Annotated[
    Optional[Schedule],
    typer.Option(
        "--schedule",
        case_sensitive=False,
        help="throughput: whole batches in vLLM at once, continuous batching keeps the GPU full (default "
        "where CUDA is visible). deterministic: reruns reproduce every completion; on CPU (its default "
        "there) batches run as pieces of --piece-size, on CUDA on vLLM's batch-invariant kernels.",
    ),
]
PieceSizeOpt = Annotated[
    int,
    typer.Option(
        "--piece-size",
        min=1,
        help="Deterministic schedule on CPU: requests vLLM runs together; bigger batches run as pieces of "
        "this size (on Ray, spread over the replicas). Completions depend on it, not on --replicas.",
    ),
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
RayOpt = Annotated[
    bool,
    typer.Option(
        "--ray",
        help="Run on Ray: a private local cluster on this machine (no dashboard, loopback only), "
        "or the cluster at --ray-address. Results are identical to the in-process run with the "
        "same --piece-size.",
    ),
]
RayAddressOpt = Annotated[
    Optional[str],
    typer.Option(
        "--ray-address",
        envvar="INSTRUCTFORGE_RAY_ADDRESS",
        help="Attach to this running Ray cluster (HOST:6379); implies --ray.",
    ),
]
ReplicasOpt = Annotated[
    int,
    typer.Option(
        "--replicas", help="Data-parallel engine replicas on Ray (each --tensor-parallel-size GPUs)."
    ),
]
CpusPerReplicaOpt = Annotated[
    Optional[float],
    typer.Option(
        "--cpus-per-replica",
        help="CPUs each Ray replica reserves (default: cores split evenly on a "
        "CPU-only machine, each replica bound to its own; 1 with GPUs).",
    ),
]
GpusPerReplicaOpt = Annotated[
    Optional[float],
    typer.Option(
        "--gpus-per-replica", help="GPUs each Ray replica reserves (default: --tensor-parallel-size)."
    ),
]
RayTempDirOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--ray-temp-dir",
        help="Folder for Ray's session files, a fresh subfolder per run, removed after a "
        "successful run (default: the system temp folder; keep the path short).",
    ),
]
EmbeddingModelOpt = Annotated[
    str,
    typer.Option(
        "--embedding-model",
        help="Sentence-transformers folder, cached hub id, or `default` (the packaged all-MiniLM-L6-v2).",
    ),
]

# SELF-INSTRUCT and Alpaca
NumInstructionsOpt = Annotated[
    int,
    typer.Option(
        "--num-instructions",
        "-n",
        help="How many new instructions to accept (after filtering); the pool grows "
        "further (--max-top-ups) until this many tasks keep an instance.",
    ),
]


class DataFormat(str, Enum):
    alpaca = "alpaca"
    openai = "openai"
    sharegpt = "sharegpt"


FormatOpt = Annotated[
    DataFormat,
    typer.Option(
        "--format",
        help="Also write the dataset as OpenAI messages or ShareGPT conversations (DATA.openai.jsonl, "
        "DATA.sharegpt.jsonl) beside the Alpaca-style file.",
    ),
]
SeedTasksOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--seed-tasks",
        help="Seed tasks: upstream seed_tasks.jsonl format, or JSONL/CSV with `instruction` "
        "[+ input, output, is_classification]. Default: instructforge's own ~40 tasks.",
    ),
]
BatchSizeOpt = Annotated[
    Optional[int],
    typer.Option(
        "--batch-size",
        min=1,
        help="Bootstrap prompts per engine call. Default: sized to the engine (in the throughput schedule "
        "enough to fill its slots, bounded by what the target still needs at the acceptance rate seen "
        "so far; 16 for self-instruct, 8 for alpaca in the deterministic one).",
    ),
]
MinWordsOpt = Annotated[int, typer.Option("--min-words", help="Drop instructions with fewer words.")]
MaxWordsOpt = Annotated[int, typer.Option("--max-words", help="Drop instructions with more words.")]
KeepCutOffOpt = Annotated[
    bool,
    typer.Option(
        "--keep-cut-off",
        help="Keep generated strings that reached their length bound (dropped by default: "
        "the grammar closed them mid-sentence).",
    ),
]
