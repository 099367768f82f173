"""Example filters of EXPLORE-INSTRUCT (Wan et al., EMNLP 2023, §2.3 "Data Filtering"): Alpaca's
heuristic instruction filters, placeholder inputs, and greedy ROUGE-L near-duplicate removal.

    quality = ExampleFilter(); reason = quality.drop_reason(example)      # None = keep
    dedup = NodeDeduper(0.7, cross_node=True); reasons = dedup.admit("paraphrase", instructions)

Upstream deduplicates instructions within each node only; `cross_node=True` (our default) also drops
an instruction that nearly repeats one of another node, so the sampled dataset has no cross-task twins.

The instruction rules (word bounds, blacklist, "Write a program", first character) are those of the
Self-Instruct/Alpaca post-processing. When the shared `generators/instruction_filters.py` lands, only
`ExampleFilter.instruction_reason` changes: it is the single place those rules live here.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass

from engine.errors import ConfigError

# Alpaca's blacklist (stanford_alpaca generate_instruction.py): tasks a text-only model cannot do.
ALPACA_BLACKLIST = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map",
                    "maps", "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram")


@dataclass(frozen=True)
class ExampleFilter:
    """Heuristic quality rules for one generated {instruction, input, output} example."""

    min_words: int = 3
    """Fewest words an instruction may have (METHODS.md: 3–150 words in Explore-Instruct)."""
    max_words: int = 150
    """Most words an instruction may have (Alpaca: 150)."""
    blacklist: tuple[str, ...] = ALPACA_BLACKLIST
    """Whole words (case-insensitive) that mark a task a text-only model cannot do (Alpaca)."""

    def __post_init__(self) -> None:
        if not 1 <= self.min_words <= self.max_words:
            raise ConfigError(f"`min_words` must be in [1, max_words={self.max_words}], got "
                              f"{self.min_words}.", parameter="min_words", value=self.min_words)
        object.__setattr__(self, "_blacklist_re", re.compile(
            r"\b(" + "|".join(re.escape(w) for w in self.blacklist) + r")\b", re.IGNORECASE)
            if self.blacklist else None)

    def instruction_reason(self, instruction: str) -> str | None:
        """Why Alpaca's rules drop this instruction, or None to keep it."""
        text = instruction.strip()
        words = len(text.split())
        if words < self.min_words:
            return "too_few_words"
        if words > self.max_words:
            return "too_many_words"
        if self._blacklist_re is not None and self._blacklist_re.search(text):
            return "blacklist"
        if text.startswith("Write a program"):  # Alpaca: models write programs badly
            return "write_a_program"
        if text[0] in string.punctuation:
            return "punctuation_start"
        if not text[0].isascii():
            return "non_ascii_start"
        return None

    def drop_reason(self, example: dict[str, str]) -> str | None:
        """Why this example is dropped (a counter name), or None to keep it."""
        reason = self.instruction_reason(example["instruction"])
        if reason:
            return reason
        if is_placeholder(example["input"]):
            return "placeholder_input"
        if not example["output"].strip():
            return "empty_output"
        return None

    def apply(self, examples: list[dict[str, str]], counts: Counter) -> list[dict[str, str]]:
        """The examples that pass, in order; each drop adds 1 to `counts["dropped_<reason>"]`."""
        kept = []
        for example in examples:
            reason = self.drop_reason(example)
            if reason:
                counts[f"dropped_{reason}"] += 1
            else:
                kept.append(example)
        return kept


def is_placeholder(text: str) -> bool:
    """An input that is only a slot like `<paragraph>` or `(insert text here)`, not real content."""
    text = text.strip()
    return len(text) >= 2 and ((text[0] == "<" and text[-1] == ">") or (text[0] == "(" and text[-1] == ")"))


class NodeDeduper:
    """Greedy ROUGE-L near-duplicate filter over instructions, per node or across all nodes.

    `admit(node, instructions)` gives None for each instruction whose ROUGE-L F1 against every pooled
    instruction (of this node, or of every node with `cross_node`) is <= threshold, and pools it;
    otherwise "rouge_same_node" or "rouge_other_node", naming whose instruction it repeats.
    """

    def __init__(self, threshold: float = 0.7, *, cross_node: bool = True):
        self.threshold, self.cross_node = threshold, cross_node
        self._pools: dict[str, tuple[object, list[str]]] = {}

    def _pool(self, node: str):
        from engine.rouge import RougeFilter

        key = "" if self.cross_node else node
        if key not in self._pools:
            # one thread: calls decide a handful of candidates, where thread start-up costs more than it saves
            self._pools[key] = (RougeFilter(self.threshold, details=False, workers=1), [])
        return self._pools[key]

    def admit(self, node: str, instructions: list[str]) -> list[str | None]:
        """Decide `instructions` of `node` in order (greedy: kept ones join the pool at once)."""
        flt, owners = self._pool(node)
        decisions = flt.check(instructions)
        owners.extend(node for d in decisions if d.keep)  # pool order = kept order
        return [None if d.keep else "rouge_same_node" if owners[d.match_index] == node
                else "rouge_other_node" for d in decisions]
