"""Alpaca (Taori et al. 2023, tatsu-lab/stanford_alpaca `generate_instruction.py`): SELF-INSTRUCT simplified.

One prompt = a rules block + 3 seed tasks (instruction, input or our "<no input>" marker, output), asking
for up to 20 new tasks, each with its input and output, in one JSON list; temperature 1.0; only seed
tasks are ever in context. Then SELF-INSTRUCT's instruction filters with Alpaca's longer blacklist and
the same greedy ROUGE-L > 0.7 rule (generators/self_instruct/filters.py), one instance per instruction,
until N are accepted. Output rows `{instruction, input, output}` with "" for no input.

    result = run_alpaca(engine, AlpacaConfig(num_instructions=100), load_seed_tasks(), run)
"""

from __future__ import annotations

import functools
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from engine.errors import InputError, require_positive
from engine.run.directory import RunDir
from engine.run.seeds import derive_seed
from engine.run.steps import run_step, write_final
from engine.types import Request, Runner, Sampling
from generators.self_instruct.bootstrap import (
    bounded_text,
    grow_instructions,
    hits_bound,
    instruction_text,
)
from generators.self_instruct.filters import InstructionFilters, RougeStep, seed_similarity_report
from generators.self_instruct.seed_tasks import SeedTask
from prompts import load_template

NO_INPUT = "<no input>"
"""What the prompt shows for a task without input; the model's answer maps it (and look-alikes) to ""."""
_NO_INPUT_SPELLINGS = {"", "<no input>", "<noinput>", "no input", "noinput", "none", "n/a", "<none>"}


@functools.lru_cache(maxsize=None)
def new_tasks_type(max_items: int, instruction_chars: int, instance_chars: int) -> type[BaseModel]:
    """`{"tasks": [{instruction, input, output}, ...]}` with 1..max_items tasks."""
    task = create_model(
        "AlpacaTask",
        __config__=ConfigDict(extra="forbid"),
        instruction=(instruction_text(instruction_chars), ...),
        input=(bounded_text(instance_chars), ...),
        output=(bounded_text(instance_chars, 1), ...),
    )
    return create_model(
        "AlpacaTasks",
        __config__=ConfigDict(extra="forbid"),
        tasks=(list[task], Field(min_length=1, max_length=max_items)),
    )


FIXED_ROUND = 8
"""Prompts per round in the deterministic schedule unless `batch_size` says otherwise."""


@dataclass(frozen=True)
class AlpacaConfig:
    """Settings of one Alpaca run; defaults are upstream's unless a comment says otherwise."""

    num_instructions: int
    seed: int = 0
    batch_size: int | None = None
    """Prompts per engine call; None: sized to the engine (self_instruct.bootstrap.round_size), FIXED_ROUND
    in the deterministic schedule (upstream: 5 requests per batch)."""
    num_prompt_instructions: int = 3
    """Seed tasks shown per prompt (upstream: 3)."""
    num_tasks_per_prompt: int = 20
    """Tasks asked for per prompt (upstream: 20)."""
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 3072
    """Completion budget (upstream: 3072); a completion cut by it is discarded."""
    instruction_chars: int = 400
    """Schema bound on one instruction (ours, as in self_instruct)."""
    instance_chars: int = 600
    """Schema bound on one input or output (ours; upstream asks for outputs under 100 words)."""
    drop_cut_off: bool = True
    """Drop tasks with a string that reached its schema bound (ours: the grammar closed it mid-sentence)."""
    rouge_threshold: float = 0.7
    max_stalled_rounds: int = 5
    """Give up after this many rounds in a row accept nothing (upstream loops forever)."""
    filters: InstructionFilters = field(default_factory=InstructionFilters.alpaca)

    def __post_init__(self) -> None:
        if self.batch_size is not None:
            require_positive(self, "batch_size")
        require_positive(
            self,
            "num_instructions",
            "num_prompt_instructions",
            "num_tasks_per_prompt",
            "max_tokens",
            "instruction_chars",
            "instance_chars",
            "max_stalled_rounds",
        )

    def to_config(self) -> dict[str, Any]:
        return {**asdict(self), "filters": self.filters.to_config()}


@dataclass
class AlpacaResult:
    rows: list[dict[str, str]]
    report: dict[str, Any]


def check_seeds(seeds: list[SeedTask]) -> None:
    """Alpaca shows each seed's instance: every seed needs one."""
    for seed in seeds:
        if not seed.instances:
            raise InputError(
                "Alpaca shows an input/output example of every seed task; this one has none "
                "(add `output`, or `instances` in the upstream format)",
                path=seed.source,
            )


def alpaca_request(config: AlpacaConfig, seeds: list[SeedTask], round_: int, index: int) -> Request:
    """One prompt: the rules + `num_prompt_instructions` seed tasks sampled for (round, index)."""
    rng = random.Random(derive_seed(config.seed, "alpaca", round_, index))
    shown = rng.sample(seeds, min(len(seeds), config.num_prompt_instructions))
    examples = [
        {
            "instruction": s.instruction,
            "input": s.instances[0].input.strip() or NO_INPUT,
            "output": s.instances[0].output,
        }
        for s in shown
    ]
    text = load_template("alpaca", "generate.j2").render(
        examples=examples, count=config.num_tasks_per_prompt, no_input=NO_INPUT
    )
    sampling = Sampling(
        temperature=config.temperature,
        top_p=config.top_p,
        max_tokens=config.max_tokens,
        seed=derive_seed(config.seed, "alpaca-sampling", round_, index),
    )
    return Request(
        messages=[{"role": "user", "content": text}],
        sampling=sampling,
        output_type=new_tasks_type(
            config.num_tasks_per_prompt, config.instruction_chars, config.instance_chars
        ),
        format_version="alpaca.generate@1",
    )


def task_item(task: Any) -> dict[str, str]:
    """One generated task as a row; the no-input marker (and look-alikes) becomes ""."""
    input_ = task.input.strip()
    return {
        "instruction": task.instruction,
        "input": "" if input_.lower() in _NO_INPUT_SPELLINGS else input_,
        "output": task.output.strip(),
    }


def task_drop_reason(config: AlpacaConfig, item: dict[str, str]) -> str | None:
    """Alpaca keeps one instance per instruction: it needs an output, and no string cut at its bound."""
    if config.drop_cut_off and (
        hits_bound(item["instruction"], config.instruction_chars)
        or hits_bound(item["input"], config.instance_chars)
        or hits_bound(item["output"], config.instance_chars)
    ):
        return "cut_off"
    if not item["output"]:
        return "empty_output"
    return None


@dataclass(frozen=True)
class AlpacaPrompter:
    """Alpaca's prompts for grow_instructions (bootstrap.Prompter): seed tasks only in context."""

    config: AlpacaConfig
    seeds: list[SeedTask]

    def request(self, round_: int, index: int, accepted: list[dict[str, Any]]) -> Request:
        return alpaca_request(self.config, self.seeds, round_, index)

    def items(self, parsed: Any) -> list[dict[str, Any]]:
        return [task_item(t) for t in parsed.tasks]

    def drop_reason(self, item: dict[str, Any]) -> str | None:
        return task_drop_reason(self.config, item)


def run_alpaca(engine: Runner, config: AlpacaConfig, seeds: list[SeedTask], run: RunDir) -> AlpacaResult:
    """Generate, filter and write an Alpaca run into `run` (resumable)."""
    check_seeds(seeds)
    seed_texts = [s.instruction for s in seeds]

    def generate():
        grown = grow_instructions(
            engine,
            AlpacaPrompter(config, seeds),
            target=config.num_instructions,
            batch_size=config.batch_size,
            fixed_round=FIXED_ROUND,
            filters=config.filters,
            rouge=RougeStep(seed_texts, config.rouge_threshold),
            max_stalled_rounds=config.max_stalled_rounds,
            desc="alpaca",
        )
        return grown.accepted, grown.stats()

    accepted, stats = run_step(run, "generate", "machine_generated_instructions.jsonl", generate)
    write_final(run, accepted)
    with_input = sum(bool(a["input"]) for a in accepted)
    report = {
        "method": "alpaca",
        "num_instructions_requested": config.num_instructions,
        "instructions": len(accepted),
        "rows": len(accepted),
        "generate": stats,
        **seed_similarity_report([a["instruction"] for a in accepted], seed_texts),
        "with_input_share": round(with_input / len(accepted), 4) if accepted else 0.0,
        "instances_per_task": 1,
    }
    run.write_report(report)
    return AlpacaResult([{k: a[k] for k in ("instruction", "input", "output")} for a in accepted], report)
