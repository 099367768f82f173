"""`instructforge explore`: EXPLORE-INSTRUCT (Wan et al., EMNLP 2023) — grow a domain's task tree
(lookahead + backtracking), enrich every task with examples, prune duplicate tasks, sample a dataset.

Start from a domain name and seed examples, or from a tree in upstream's layout. The run folder gets
`explore_instruct.jsonl` ({instruction, input, output}; `datasets.load_dataset("json", ...)` reads it),
`tree/` (the grown tree, upstream layout), `pruned_tasks.json`, `report.json` and `manifest.json`.
Rerunning the same command resumes: finished steps are skipped, finished requests come from the cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from engine.errors import ConfigError
from instructforge.engine_args import EngineArgs, with_engine_options
from instructforge.options import DataFormat, FormatOpt, OutDirOpt, TemperatureOpt

EXAMPLES = """\
Examples:

  instructforge explore --tree ../shared/data/explore_instruct_demo_domain --depth 2 --out runs/demo

  instructforge explore --domain "Email writing" --seed-examples seeds.jsonl --depth 3 \\
      --new-subtasks 6,4,3 --examples-per-node 200,100,50 --sample-size 5000 --out runs/email

  instructforge explore --tree runs/demo/tree --depth 3 --out runs/demo3 --model ~/models/Qwen2.5-7B-Instruct
"""


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(
            f"`{option}` must be comma-separated integers, got {text!r}.", parameter=option, value=text
        ) from None
    return values


def _load_source(tree_dir: Optional[Path], domain: Optional[str], seed_examples: Optional[Path]):
    from engine.errors import InputError
    from engine.run.io import read_records
    from generators.explore_instruct.tree import EXAMPLE_FIELDS, load_tree, new_tree

    if (tree_dir is None) == (domain is None):
        raise ConfigError(
            "Give exactly one of `--tree DIR` or `--domain TEXT` (with --seed-examples); "
            f"{'both' if tree_dir else 'none'} given.",
            parameter="tree",
        )
    if tree_dir is not None:
        if seed_examples is not None:
            raise ConfigError(
                "`--seed-examples` goes with `--domain`, not with `--tree`.", parameter="seed_examples"
            )
        return load_tree(tree_dir), {"tree": str(tree_dir.resolve())}
    if seed_examples is None:
        raise ConfigError(
            "`--domain` needs `--seed-examples FILE` ({instruction, input, output} rows).",
            parameter="seed_examples",
        )
    examples = []
    for record in read_records(seed_examples):
        examples.append({name: record.require(name, str) for name in EXAMPLE_FIELDS})
    if not examples:
        raise InputError("no seed examples", path=seed_examples)
    return new_tree(domain, examples), {"domain": domain, "seed_examples": str(seed_examples.resolve())}


@with_engine_options
def main(
    out: OutDirOpt,
    engine: EngineArgs,
    depth: Annotated[int, typer.Option("--depth", help="K: grow the tree down to this depth.")],
    tree: Annotated[
        Optional[Path],
        typer.Option("--tree", help="Start from this tree folder (tree_meta_info.json + one JSON per task)."),
    ] = None,
    domain: Annotated[
        Optional[str],
        typer.Option("--domain", help="Start from a new tree: the domain's name (the root task)."),
    ] = None,
    seed_examples: Annotated[
        Optional[Path],
        typer.Option(
            "--seed-examples", help="With --domain: the root's examples, {instruction, input, output} rows."
        ),
    ] = None,
    new_subtasks: Annotated[
        str,
        typer.Option(
            "--new-subtasks", help="New subtasks per node, by node depth (comma list; the last repeats)."
        ),
    ] = "4",
    subtasks_per_request: Annotated[
        int,
        typer.Option("--subtasks-per-request", help="Subtasks asked for per extend request (paper: 3-5)."),
    ] = 4,
    max_children: Annotated[int, typer.Option("--max-children", help="M: most children per node.")] = 12,
    max_attempts: Annotated[
        int, typer.Option("--max-attempts", help="Rounds of requests per node, per step, before giving up.")
    ] = 3,
    examples_per_node: Annotated[
        str,
        typer.Option(
            "--examples-per-node", help="Target examples per node, by depth (comma list; the last repeats)."
        ),
    ] = "100",
    examples_per_request: Annotated[
        int, typer.Option("--examples-per-request", help="Examples asked for per enrich request.")
    ] = 10,
    sample_size: Annotated[
        int, typer.Option("--sample-size", help="Examples in the sampled dataset.")
    ] = 10_000,
    sample_max_depth: Annotated[
        int, typer.Option("--sample-max-depth", help="Sample from nodes at this depth or above.")
    ] = 3,
    cross_node_dedup: Annotated[
        bool,
        typer.Option(
            "--cross-node-dedup/--no-cross-node-dedup",
            help="Also drop instructions that nearly repeat another task's (upstream: within a task only).",
        ),
    ] = True,
    temperature: TemperatureOpt = 0.7,
    data_format: FormatOpt = DataFormat.alpaca,
    max_tokens: Annotated[
        Optional[int],
        typer.Option("--max-tokens", min=1, help="Most tokens per completion (default: each step's own)."),
    ] = None,
) -> None:
    """Grow a domain tree with a local model and sample a balanced instruction dataset from it."""
    from engine.run.directory import RunDir
    from engine.run.steps import export
    from generators.explore_instruct.grow import ExploreConfig
    from generators.explore_instruct.pipeline import DATASET_FILE, PRUNED_FILE, run_explore
    from instructforge.publishing import describe

    source_tree, source = _load_source(tree, domain, seed_examples)
    tokens = {} if max_tokens is None else {"extend_max_tokens": max_tokens, "enrich_max_tokens": max_tokens}
    cfg = ExploreConfig(
        max_depth=depth,
        new_subtasks=_ints(new_subtasks, "new_subtasks"),
        subtasks_per_request=subtasks_per_request,
        max_children=max_children,
        max_attempts=max_attempts,
        examples_per_node=_ints(examples_per_node, "examples_per_node"),
        examples_per_request=examples_per_request,
        sample_size=sample_size,
        sample_max_depth=sample_max_depth,
        cross_node_dedup=cross_node_dedup,
        temperature=temperature,
        seed=engine.seed,
        **tokens,
    )
    run = RunDir(out)
    run.claim("explore", {"source": source, "config": cfg.to_dict(), "model": engine.model})
    with engine.build("exploring") as llm:
        report = run_explore(llm, source_tree, run, cfg, log=lambda line: typer.echo(line, err=True))
        exported = export(run / DATASET_FILE, data_format.value)
        run.write_manifest(
            command="explore",
            config={"source": source, **cfg.to_dict(), "engine": engine.to_config()},
            engine=llm,
            counts={
                "input_nodes": report["input_tree"]["nodes"],
                "output_nodes": report["output_tree"]["nodes"],
                "pruned": len(report["pruned"]),
                "rows": report["sample"]["rows"],
            },
            outputs=[
                DATASET_FILE,
                "tree/",
                PRUNED_FILE,
                "report.json",
                *([exported.name] if exported else []),
            ],
            publication=describe("explore", run.path),
        )
        summary = llm.stats.summary()
    before, after = report["input_tree"], report["output_tree"]
    typer.echo(
        f"tree {before['nodes']} -> {after['nodes']} tasks ({before['examples']} -> "
        f"{after['examples']} examples), {len(report['pruned'])} pruned; wrote "
        f"{report['sample']['rows']} rows to {out / DATASET_FILE}; {summary}"
    )
