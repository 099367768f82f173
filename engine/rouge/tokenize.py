"""ROUGE-L tokenizers: rouge_score's default tokenizer (with or without its Porter stemming), and a Unicode
mode.

SELF-INSTRUCT (Wang et al. 2023, §2.2 "Filtering and postprocessing") and Alpaca score near-duplicates with
`rouge_score.rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)`. Its tokenizer lowercases, turns every
run of characters outside `[a-z0-9]` into a space and keeps `^[a-z0-9]+$` tokens; with `use_stemmer=True` it
first applies nltk's Porter stemmer to tokens longer than 3 characters. "default" and "stem" reproduce that
exactly (tests check every real instruction in ../shared/data against rouge_score itself).

"unicode" is a documented deviation: rouge_score drops every non-ASCII letter, so Chinese, Japanese, Korean,
Thai or Russian instructions tokenize to nothing, score 0 and are never deduplicated. Unicode mode NFKC-
normalizes and case-folds, keeps letters, marks and digits of every script as words, and splits scripts
written without spaces (Han, kana, Hangul, Thai, Lao, Khmer, Myanmar, ...) into one token per character
(a base character with its combining marks). On pure ASCII text it gives the same tokens as "default".

    tokenize("Write a poem about cats.")  # ['write', 'a', 'poem', 'about', 'cats']
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from functools import lru_cache

from engine.errors import ConfigError

MODES = ("default", "stem", "unicode")

# rouge_score: lower() -> "[^a-z0-9]+" becomes " " -> split -> keep "^[a-z0-9]+$". The maximal [a-z0-9]
# runs of the lowercased text are exactly those tokens, so one findall does the three steps.
_ASCII_WORD = re.compile(r"[a-z0-9]+")
_VALID = re.compile(r"^[a-z0-9]+$")

# Scripts written without spaces between words: one token per character (plus its combining marks).
_PER_CHAR_SCRIPTS = (
    "Han",
    "Hiragana",
    "Katakana",
    "Hangul",
    "Thai",
    "Lao",
    "Khmer",
    "Myanmar",
    "Tibetan",
    "Bopomofo",
    "Yi",
)


def tokenize_default(text: str) -> list[str]:
    """rouge_score's tokenizer with `use_stemmer=False`."""
    return _ASCII_WORD.findall(text.lower())


class _PorterTokenizer:
    """rouge_score's tokenizer with `use_stemmer=True`: nltk's Porter stemmer on tokens longer than 3 chars.

    The stemmer is pure and slow (~20 µs a word), so stems are memoized per distinct word.
    """

    def __init__(self) -> None:
        from nltk.stem import porter  # lazily: only the stem mode needs nltk

        self._stem = lru_cache(maxsize=1 << 20)(porter.PorterStemmer().stem)

    def __call__(self, text: str) -> list[str]:
        stem = self._stem
        tokens = [stem(w) if len(w) > 3 else w for w in _ASCII_WORD.findall(text.lower())]
        return [w for w in tokens if _VALID.match(w)]  # the same last check rouge_score makes


class _UnicodeTokenizer:
    """Words of every script; one token per character for scripts written without spaces."""

    def __init__(self) -> None:
        import regex  # lazily; a dependency of nltk (and so of rouge_score) and of transformers

        per_char = "".join(rf"\p{{{s}}}" for s in _PER_CHAR_SCRIPTS)
        self._pattern = regex.compile(
            rf"[{per_char}]\p{{M}}*"  # one character (+ its marks)
            rf"|(?:(?![{per_char}])[\p{{L}}\p{{N}}]\p{{M}}*)+"
        )  # or a word of any other script

    def __call__(self, text: str) -> list[str]:
        return self._pattern.findall(unicodedata.normalize("NFKC", text).casefold())


@lru_cache(maxsize=None)
def get_tokenizer(mode: str = "default") -> Callable[[str], list[str]]:
    """The tokenizer for `mode` ("default", "stem" or "unicode"); one shared instance per mode."""
    if mode == "default":
        return tokenize_default
    if mode == "stem":
        return _PorterTokenizer()
    if mode == "unicode":
        return _UnicodeTokenizer()
    raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}.", parameter="mode", value=mode)


def tokenize(text: str, mode: str = "default") -> list[str]:
    """Tokens of `text` as ROUGE-L sees them in `mode` (see the module docstring)."""
    return get_tokenizer(mode)(text)
