"""Example filters of EXPLORE-INSTRUCT (Wan et al., EMNLP 2023, §2.3 "Data Filtering"): Alpaca's
heuristic instruction filters, placeholder inputs, and greedy ROUGE-L near-duplicate removal.

    quality = ExampleFilter(); reason = quality.drop_reason(example)      # None = keep
    dedup = NodeDeduper(0.7, cross_node=True); reasons = dedup.admit("paraphrase", instructions)

The instruction rules (word bounds, blacklist, "Write a program", first character) are the shared
Self-Instruct/Alpaca filters of `generators/self_instruct/filters.py`, with Explore-Instruct's 3–150
word bounds. Upstream deduplicates instructions within each node only; `cross_node=True` (our
default) also drops an instruction that nearly repeats one of another node, so the sampled dataset
has no cross-task twins.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from generators.self_instruct.filters import InstructionFilters, clean_instruction


@dataclass(frozen=True)
class ExampleFilter:
    """Quality rules for one generated {instruction, input, output} example."""

    min_words: int = 3
    """Fewest words an instruction may have (METHODS.md: 3–150 words in Explore-Instruct)."""
    max_words: int = 150
    """Most words an instruction may have (Alpaca: 150)."""

    def __post_init__(self) -> None:  # Alpaca's blacklist; validates the bounds
        object.__setattr__(
            self,
            "_instruction",
            InstructionFilters.alpaca(min_words=self.min_words, max_words=self.max_words),
        )

    def drop_reason(self, example: dict[str, str]) -> str | None:
        """Why this example (instruction already cleaned) is dropped, or None to keep it."""
        reason = self._instruction.reason(example["instruction"])
        if reason:
            return reason
        if is_placeholder(example["input"]):
            return "placeholder_input"
        if not example["output"].strip():
            return "empty_output"
        return None

    def apply(self, examples: list[dict[str, str]], counts: Counter) -> list[dict[str, str]]:
        """The examples that pass (whitespace of instructions collapsed), in order; each drop adds 1 to
        `counts["dropped_<reason>"]`."""
        kept = []
        for example in examples:
            example = {**example, "instruction": clean_instruction(example["instruction"])}
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
        from engine.rouge.filter import RougeFilter

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
        return [
            None if d.keep else "rouge_same_node" if owners[d.match_index] == node else "rouge_other_node"
            for d in decisions
        ]
