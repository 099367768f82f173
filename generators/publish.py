"""How each generator's run is published (engine/run/publish): its paper, its funnel read from the run's
report.json, its ROUGE-L-to-seed histogram, the verb-noun sunburst of its instructions (Self-Instruct
§3.2, Fig. 2, drawn by generators/verb_noun.py), the Explore-Instruct tree, and the dropped rows the run
keeps. Each describer reads only what the run wrote.

    publication = self_instruct(Path("runs/si-50"))
"""

from __future__ import annotations

import functools
import json
import random
import tempfile
from pathlib import Path
from typing import Any

from engine.errors import ModelError
from engine.run.publish import Figure, Histogram, Paper, Publication, Stage, TreeNode
from engine.run.publish.plots import missing_glyphs_quiet

PAPERS = {
    "self-instruct": Paper(
        "Wang et al., ACL 2023: Self-Instruct: Aligning Language Models with Self-Generated Instructions",
        "https://arxiv.org/abs/2212.10560",
    ),
    "alpaca": Paper(
        "Taori et al., 2023: Alpaca: A Strong, Replicable Instruction-Following Model (Stanford CRFM)",
        "https://crfm.stanford.edu/2023/03/13/alpaca.html",
    ),
    "dynosaur": Paper(
        "Yin et al., EMNLP 2023: Dynosaur: A Dynamic Growth Paradigm for Instruction-Tuning Data Curation",
        "https://arxiv.org/abs/2305.14327",
    ),
    "explore-instruct": Paper(
        "Wan et al., EMNLP 2023: Explore-Instruct: Enhancing Domain-Specific Instruction Coverage through "
        "Active Exploration",
        "https://arxiv.org/abs/2310.09168",
    ),
}
VERB_NOUN_SAMPLE = 2000
"""Most instructions parsed for the sunburst (a seeded sample of larger runs; ~1 s per 1,000 on 2 cores)."""
DROPPED_SHOWN = 8
STRONGER_MODEL = "a stronger --model writes answers that pass"
INSTRUCTION_FLAGS = {
    "too_short": "--min-words lowers the shortest instruction kept",
    "too_long": "--max-words raises the longest instruction kept",
    "cut_off": "--keep-cut-off keeps answers that hit the length bound",
    "*": STRONGER_MODEL,
}


def read_report(run: Path) -> dict[str, Any]:
    return json.loads((run / "report.json").read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def dropped_of(counters: dict[str, Any]) -> dict[str, int]:
    """The report's `dropped_<reason>` counters as reason -> count (zeros left out)."""
    return {k.removeprefix("dropped_"): v for k, v in counters.items() if k.startswith("dropped_") and v}


def responses(name: str, unit: str, asked: int, failures: dict[str, int]) -> Stage:
    """The model's answers: each request, and those that failed (cut at max_tokens, invalid)."""
    failures = {k.removeprefix("failed_"): v for k, v in failures.items() if v}
    return Stage(name, unit, asked, failures, asked - sum(failures.values()), {"*": STRONGER_MODEL}, "failed")


def rouge_histogram(report: dict[str, Any]) -> list[Histogram]:
    bins = report.get("rouge_to_seed_histogram")
    if not bins:
        return []
    return [Histogram("ROUGE-L to the most similar seed instruction", "ROUGE-L F1", bins)]


@functools.cache
def _parser():
    from generators.verb_noun import load_parser

    return load_parser()  # ~2 s: once per process


def verb_noun(instructions: list[str], figures: dict[str, Any]) -> list[Figure]:
    """The sunburst of top root verbs and their direct-object nouns; its counts go into `figures`."""
    from generators.verb_noun import plot_verb_noun, verb_noun_stats

    if not instructions:
        return []
    texts = instructions
    if len(texts) > VERB_NOUN_SAMPLE:
        texts = random.Random(0).sample(texts, VERB_NOUN_SAMPLE)
    try:
        stats = verb_noun_stats(texts, _parser())
    except ModelError as e:  # the parser package is missing: the run is fine, the figure is not drawn
        figures["verb-noun pairs"] = f"not computed ({e})"
        return []
    figures["unique verb-noun pairs"] = stats.unique_pairs
    figures["instructions with a root verb"] = f"{stats.with_verb} of {stats.instructions}"
    if not stats.pairs:
        return []
    with tempfile.TemporaryDirectory() as folder, missing_glyphs_quiet():
        png = plot_verb_noun(stats, Path(folder) / "verb_noun.png").read_bytes()
    sampled = (
        f" (a seeded sample of {len(texts):,} of {len(instructions):,})" if texts is not instructions else ""
    )
    caption = f"Inner ring: the top root verbs; outer ring: their top direct-object nouns{sampled}."
    return [Figure("Top root verbs and their direct nouns", png, caption)]


def self_instruct(run: Path) -> Publication:
    report = read_report(run)
    boot, inst = report.get("bootstrap", {}), report.get("instances", {})
    rows, tasks = report.get("rows", 0), inst.get("tasks", 0)
    instance_drops = dropped_of(inst)
    funnel = [
        responses(
            "bootstrap: responses", "responses", boot.get("prompts", 0), boot.get("response_failures", {})
        ),
        Stage(
            "bootstrap: filters",
            "instructions",
            boot.get("candidates", 0),
            dropped_of(boot),
            boot.get("accepted", 0),
            INSTRUCTION_FLAGS,
        ),
        responses("instances: responses", "tasks", tasks, inst.get("response_failures", {})),
        Stage(
            "instances: rules",
            "instances",
            rows + sum(instance_drops.values()),
            instance_drops,
            rows,
            {"cut_off": INSTRUCTION_FLAGS["cut_off"], "*": STRONGER_MODEL},
        ),
        Stage(
            "tasks",
            "tasks",
            tasks,
            {"no_instance_left": tasks - inst.get("tasks_with_instances", 0)},
            inst.get("tasks_with_instances", 0),
            {"*": "--max-top-ups grows the pool; " + STRONGER_MODEL},
        ),
    ]
    figures = {
        "instructions": report.get("instructions", 0),
        "tasks with instances": report.get("tasks_with_instances", 0),
        "rows": rows,
        "bootstrap rounds": boot.get("rounds", 0),
        "pool top-ups": len(boot.get("top_ups", [])),
        "classification share": (report.get("classification") or {}).get("share", 0.0),
        "mean ROUGE-L to seed": report.get("rouge_to_seed_mean"),
    }
    instructions = [r["instruction"] for r in read_jsonl(run / "machine_generated_instructions.jsonl")]
    kept = {r["instruction"] for r in read_jsonl(run / "data.jsonl")}
    dropped = [
        {
            "reason": t.get("failure") or "no instance passed the rules",
            "row": {"instruction": t["instruction"], "raw_instances": t.get("raw_instances", [])},
        }
        for t in read_jsonl(run / "machine_generated_instances.jsonl")
        if t["instruction"] not in kept
    ][:DROPPED_SHOWN]
    return Publication(
        method="self-instruct",
        title="SELF-INSTRUCT",
        summary="Instructions bootstrapped from seed tasks by the model itself (8 seed + 2 machine "
        "demonstrations per prompt), filtered by ROUGE-L < 0.7 to the pool and the paper's heuristics, "
        "classified, then given input-output instances (output-first for classification tasks).",
        data="data.jsonl",
        rows=rows,
        paper=PAPERS["self-instruct"],
        funnel=funnel,
        figures_of_run=figures,
        histograms=rouge_histogram(report),
        figures=verb_noun(instructions, figures),
        dropped_samples=dropped,
        empty_hint=STRONGER_MODEL,
    )


def alpaca(run: Path) -> Publication:
    report = read_report(run)
    grown = report.get("generate", {})
    funnel = [
        responses(
            "generate: responses", "responses", grown.get("prompts", 0), grown.get("response_failures", {})
        ),
        Stage(
            "generate: filters",
            "tasks",
            grown.get("candidates", 0),
            dropped_of(grown),
            grown.get("accepted", 0),
            INSTRUCTION_FLAGS,
        ),
    ]
    figures = {
        "instructions": report.get("instructions", 0),
        "rows": report.get("rows", 0),
        "rounds": grown.get("rounds", 0),
        "share with an input": report.get("with_input_share", 0.0),
        "mean ROUGE-L to seed": report.get("rouge_to_seed_mean"),
    }
    instructions = [r["instruction"] for r in read_jsonl(run / "data.jsonl")]
    return Publication(
        method="alpaca",
        title="Alpaca",
        summary="Alpaca's variant of SELF-INSTRUCT: 3 seed tasks per prompt, up to 20 new "
        "{instruction, input, output} tasks per response in one pass, filtered by ROUGE-L < 0.7 and "
        "Alpaca's blacklist.",
        data="data.jsonl",
        rows=report.get("rows", 0),
        paper=PAPERS["alpaca"],
        funnel=funnel,
        figures_of_run=figures,
        histograms=rouge_histogram(report),
        figures=verb_noun(instructions, figures),
        empty_hint=STRONGER_MODEL,
    )


def dynosaur(run: Path) -> Publication:
    report = read_report(run)
    datasets, tasks, instances = report["datasets"], report["tasks"], report["instances"]
    asked = sum(report.get("requests", {}).values())
    failures = {k: v for k, v in report.get("requests", {}).items() if k != "ok"}
    row_drops = {k: v for k, v in instances.items() if k != "total" and v}
    funnel = [
        Stage(
            "datasets",
            "datasets",
            datasets["seen"],
            datasets.get("skipped", {}),
            datasets["usable"],
            {"*": "--exclude-licenses '' keeps datasets of any license"},
        ),
        responses("task design: responses", "responses", asked, failures),
        Stage(
            "task filters",
            "tasks",
            sum(tasks.get("proposed", {}).values()),
            dropped_of(tasks),
            tasks["total"],
            {
                "degenerate_instruction": STRONGER_MODEL + " (its instructions were too short or not words)",
                "*": STRONGER_MODEL,
            },
        ),
    ]
    if row_drops:
        funnel.append(
            Stage(
                "instance rows",
                "rows",
                instances["total"] + sum(row_drops.values()),
                row_drops,
                instances["total"],
            )
        )
    figures = {
        "datasets used": datasets["usable"],
        "datasets with tasks": datasets.get("with_tasks", 0),
        "tasks": tasks["total"],
        "tasks with a label space": tasks.get("with_label_space", 0),
        "instances": instances["total"],
        **{f"tasks kept ({setting})": n for setting, n in tasks.get("kept", {}).items()},
    }
    dropped = []
    for path in sorted((run / "datasets").glob("*.json")):
        for task in json.loads(path.read_text(encoding="utf-8")).get("dropped_tasks", []):
            row = {
                k: task.get(k)
                for k in ("task_name", "setting", "instruction", "input_fields", "output_field")
            }
            dropped.append({"reason": task.get("reason", ""), "row": row})
    instructions = [t["instruction"] for t in read_jsonl(run / "tasks.jsonl")]
    return Publication(
        method="dynosaur",
        title="DYNOSAUR",
        summary="Instruction tasks designed by the model from each dataset's metadata (its field names are a "
        "grammar enum, so every task names real fields), filtered, then instantiated from the dataset's own "
        "rows: instances are real data, only instructions are generated.",
        data="instances.jsonl",
        rows=instances["total"],
        paper=PAPERS["dynosaur"],
        funnel=funnel,
        figures_of_run=figures,
        figures=verb_noun(instructions, figures),
        dropped_samples=dropped[:DROPPED_SHOWN],
        empty_hint=STRONGER_MODEL,
    )


def explore_tree(run: Path, nodes: dict[str, Any]) -> TreeNode | None:
    from generators.explore_instruct.tree import load_tree

    if not (run / "tree").is_dir():
        return None

    def convert(node) -> TreeNode:
        info = nodes.get(node.task_name, {})
        detail = f"{len(node.examples)} examples, {info.get('sampled', 0)} sampled"
        detail += ", pruned" if info.get("pruned") else ""
        return TreeNode(node.raw_task_name, detail, [convert(child) for child in node.children])

    return convert(load_tree(run / "tree").root)


def explore(run: Path) -> Publication:
    report = read_report(run)
    funnel = []
    for level in report.get("extend", []):
        counts, depth = level.get("counts", {}), level.get("depth", 0)
        failed = {k: v for k, v in counts.items() if k.startswith("failed_")}
        funnel.append(
            responses(f"extend depth {depth}: responses", "responses", counts.get("requests", 0), failed)
        )
        rejected = {
            k.removeprefix("rejected_"): v for k, v in counts.items() if k.startswith("rejected_") and v
        }
        funnel.append(
            Stage(
                f"extend depth {depth}: subtasks",
                "subtasks",
                counts.get("proposed", 0),
                rejected,
                counts.get("added", 0),
                {"*": STRONGER_MODEL},
            )
        )
    nodes = report.get("nodes", {})
    funnel.append(
        Stage(
            "prune",
            "tasks",
            len(nodes),
            {"near_duplicate_name": len(report.get("pruned", []))},
            len(nodes) - len(report.get("pruned", [])),
        )
    )
    enrich = report.get("enrich", {}).get("counts", {})
    failed = {k: v for k, v in enrich.items() if k.startswith("failed_")}
    funnel.append(responses("enrich: responses", "responses", enrich.get("requests", 0), failed))
    funnel.append(
        Stage(
            "enrich: examples",
            "examples",
            enrich.get("candidates", 0),
            dropped_of(enrich),
            enrich.get("added", 0),
            {"*": STRONGER_MODEL},
        )
    )
    sample = report.get("sample", {})
    figures = {
        "tasks before": report.get("input_tree", {}).get("nodes", 0),
        "tasks after": report.get("output_tree", {}).get("nodes", 0),
        "examples before": report.get("input_tree", {}).get("examples", 0),
        "examples after": report.get("output_tree", {}).get("examples", 0),
        "rows sampled": sample.get("rows", 0),
        "rows requested": sample.get("requested", 0),
        "tasks sampled": sample.get("nodes_sampled", 0),
    }
    dropped = [
        {"reason": r.get("reason", ""), "row": {"parent": r.get("parent"), "subtask": r.get("raw_task_name")}}
        for level in report.get("extend", [])
        for r in level.get("rejected", [])
    ]
    dropped += [
        {"reason": "near_duplicate_name", "row": {"subtask": p.get("task_name")}}
        for p in report.get("pruned", [])
    ]
    instructions = [r["instruction"] for r in read_jsonl(run / "explore_instruct.jsonl")]
    return Publication(
        method="explore-instruct",
        title="EXPLORE-INSTRUCT",
        summary="A domain's task tree grown by the model (lookahead and backtracking exploration), "
        "enriched with examples per task, pruned of near-duplicate tasks, then sampled into a balanced "
        "dataset.",
        data="explore_instruct.jsonl",
        rows=sample.get("rows", 0),
        paper=PAPERS["explore-instruct"],
        funnel=funnel,
        figures_of_run=figures,
        figures=verb_noun(instructions, figures),
        tree=explore_tree(run, nodes),
        dropped_samples=dropped[:DROPPED_SHOWN],
        empty_hint="--sample-size and --depth set how many rows are sampled; " + STRONGER_MODEL,
    )
