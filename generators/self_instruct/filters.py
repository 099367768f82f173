"""Instruction filters of SELF-INSTRUCT (Wang et al. 2023, §2.2 "Filtering and postprocessing") and Alpaca.

Named steps, applied in upstream's order to each new instruction; the first that fails drops it and
its name is the drop reason (counted, datatrove style):

    empty            nothing left after whitespace is collapsed
    too_short        fewer than `min_words` words (upstream drops <= 3, keeps 4-150)
    too_long         more than `max_words` words
    blacklist        a whole-word, case-insensitive blacklisted word (images, files, "go to", ...)
    write_a_program  starts with "Write a program" (upstream: the model bolts it onto everything)
    punctuation      first character is ASCII punctuation
    non_ascii        first character is not ASCII

Then `RougeStep`: the near-duplicate filter, ROUGE-L F1 > 0.7 against any pool instruction (seeds +
accepted, greedy: accepted ones join the pool at once), with upstream's most-similar record per keep.
Upstream `.capitalize()`s each instruction, lowercasing the rest of it; we keep the case as written.

    filters = InstructionFilters.self_instruct(); kept, drops = filters.apply(items)
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.errors import ConfigError

# yizhongw/self-instruct bootstrap_instructions.py (METHODS.md): words a text-only model cannot act on.
SELF_INSTRUCT_BLACKLIST = (
    "image",
    "images",
    "graph",
    "graphs",
    "picture",
    "pictures",
    "file",
    "files",
    "map",
    "maps",
    "draw",
    "plot",
    "go to",
)
# tatsu-lab/stanford_alpaca generate_instruction.py adds media words (METHODS.md).
ALPACA_BLACKLIST = SELF_INSTRUCT_BLACKLIST + ("video", "audio", "music", "flowchart", "diagram")

STEP_NAMES = ("empty", "too_short", "too_long", "blacklist", "write_a_program", "punctuation", "non_ascii")

_WHITESPACE = re.compile(r"\s+")
_ENUMERATION = re.compile(r"^(?:\d+\s?[.)]\s+)+")  # "8. ", "1) 2. ": list numbering copied into the item


def clean_instruction(text: str) -> str:
    """Collapse whitespace, strip, and drop leading list numbers ("8. Write ..." -> "Write ...").

    Upstream gets the numbering off by splitting the completion on it; small models also copy it into
    each JSON string. Upstream then `.capitalize()`s, lowercasing the rest (a bug): not done here.
    """
    return _ENUMERATION.sub("", _WHITESPACE.sub(" ", text).strip())


@dataclass(frozen=True)
class InstructionFilters:
    """The configurable instruction filters; `reason(text)` names the first failing step or returns None."""

    min_words: int = 4
    """Fewest words kept (upstream: `len(inst.split()) <= 3` is dropped)."""
    max_words: int = 150
    """Most words kept (upstream: `> 150` is dropped)."""
    blacklist: tuple[str, ...] = SELF_INSTRUCT_BLACKLIST
    """Whole words (or phrases), matched case-insensitively."""
    banned_prefixes: tuple[str, ...] = ("Write a program",)
    """Case-sensitive prefixes that drop an instruction (upstream: `startswith("Write a program")`)."""
    disabled: frozenset[str] = field(default_factory=frozenset)
    """Step names (from STEP_NAMES) to skip."""

    def __post_init__(self) -> None:
        if not 1 <= self.min_words <= self.max_words:
            raise ConfigError(
                f"`min_words` must be in [1, max_words={self.max_words}], got {self.min_words}.",
                parameter="min_words",
                value=self.min_words,
            )
        unknown = sorted(set(self.disabled) - set(STEP_NAMES))
        if unknown:
            raise ConfigError(
                f"`disabled` must name steps among {', '.join(STEP_NAMES)}, got {unknown}.",
                parameter="disabled",
                value=unknown,
            )
        words = "|".join(re.escape(w) for w in self.blacklist)
        # upstream's find_word_in_string: r"\b(word)\b" with IGNORECASE
        object.__setattr__(
            self, "_blacklisted", re.compile(rf"\b(?:{words})\b", re.IGNORECASE) if self.blacklist else None
        )

    @classmethod
    def self_instruct(cls, **overrides: Any) -> InstructionFilters:
        return cls(**overrides)

    @classmethod
    def alpaca(cls, **overrides: Any) -> InstructionFilters:
        return cls(**{"blacklist": ALPACA_BLACKLIST, **overrides})

    def steps(self) -> list[tuple[str, Callable[[str], bool]]]:
        """(name, drops?) in upstream's order, without the disabled ones."""
        checks: list[tuple[str, Callable[[str], bool]]] = [
            ("empty", lambda s: not s),
            ("too_short", lambda s: len(s.split()) < self.min_words),
            ("too_long", lambda s: len(s.split()) > self.max_words),
            ("blacklist", lambda s: self._blacklisted is not None and bool(self._blacklisted.search(s))),
            ("write_a_program", lambda s: s.startswith(self.banned_prefixes)),
            ("punctuation", lambda s: bool(s) and s[0] in string.punctuation),
            ("non_ascii", lambda s: bool(s) and not s[0].isascii()),
        ]
        return [(name, check) for name, check in checks if name not in self.disabled]

    def reason(self, instruction: str) -> str | None:
        """The name of the first step that drops `instruction` (already cleaned), or None to keep it."""
        for name, drops in self.steps():
            if drops(instruction):
                return name
        return None

    def apply(self, items: Iterable[dict[str, Any]], drops: Counter | None = None) -> list[dict[str, Any]]:
        """Keep the items whose cleaned `instruction` passes; count each drop's reason in `drops`."""
        drops = drops if drops is not None else Counter()
        kept = []
        for item in items:
            item = {**item, "instruction": clean_instruction(item["instruction"])}
            why = self.reason(item["instruction"])
            if why is None:
                kept.append(item)
            else:
                drops[why] += 1
        return kept

    def to_config(self) -> dict[str, Any]:
        return {
            "min_words": self.min_words,
            "max_words": self.max_words,
            "blacklist": list(self.blacklist),
            "banned_prefixes": list(self.banned_prefixes),
            "disabled": sorted(self.disabled),
        }


class RougeStep:
    """The greedy ROUGE-L near-duplicate step over seeds + accepted instructions (upstream threshold 0.7).

    `check(items)` keeps, in order, the items whose instruction scores <= threshold against every pool
    instruction, adds each kept one to the pool at once, and annotates it with upstream's
    `most_similar_instructions` (top 10 -> F1) and `avg_similarity_score`. Drops count as "rouge".
    """

    def __init__(self, seeds: Sequence[str], threshold: float = 0.7, top_k: int = 10):
        from engine.rouge.filter import RougeFilter

        self.filter = RougeFilter(threshold, top_k=top_k, details=True)
        self.filter.add(seeds)

    def check(self, items: Sequence[dict[str, Any]], drops: Counter | None = None) -> list[dict[str, Any]]:
        drops = drops if drops is not None else Counter()
        kept = []
        for item, decision in zip(items, self.filter.check([it["instruction"] for it in items])):
            if not decision.keep:
                drops["rouge"] += 1
                continue
            kept.append(
                {
                    **item,
                    "most_similar_instructions": decision.most_similar or {},
                    "avg_similarity_score": decision.avg_similarity or 0.0,
                }
            )
        return kept


def seed_similarity_report(instructions: Sequence[str], seeds: Sequence[str]) -> dict[str, Any]:
    """report.json's ROUGE-to-seed part: histogram and mean of each instruction's best F1 against the
    seeds, scored as the filter scores (rouge_score's arithmetic)."""
    from engine.rouge.filter import best_rouge_l

    best = best_rouge_l(instructions, seeds)
    return {
        "rouge_to_seed_histogram": histogram(best),
        "rouge_to_seed_mean": round(sum(best) / len(best), 4) if best else None,
    }


def histogram(values: Iterable[float], bins: int = 10) -> dict[str, int]:
    """Counts of values in [0, 0.1), [0.1, 0.2), ..., [0.9, 1.0] keyed "0.0-0.1", ... (report.json)."""
    counts = Counter(min(int(v * bins), bins - 1) for v in values)
    return {f"{i / bins:.1f}-{(i + 1) / bins:.1f}": counts.get(i, 0) for i in range(bins)}
