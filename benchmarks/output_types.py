"""Output types on a real model: does every finished output satisfy its constraint, and what does each
constraint cost against free text on the same prompts, in one run.

    python benchmarks/output_types.py                 # default model, 64 prompts per kind
    python benchmarks/output_types.py --model /path/to/hf-folder --prompts 32

Prompts are the real SELF-INSTRUCT seed instructions (../shared/data), each asked a question whose answer
the constraint shapes: a date (outlines' `types.date`, a regex), yes/no (a `Choice`), an arithmetic
expression (a Lark `CFG`) and a small JSON object (pydantic). Each output is checked by a reader that is
not the engine's (Python `re`, `lark`, `jsonschema`). Greedy; tok/s over generation time only. Prints a
table and each kind's tok/s as a ratio of the free-text reference measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import re
import time

from common import seed_instructions

ARITHMETIC = """
start: expr
expr: term (("+" | "-") term)*
term: NUMBER | "(" expr ")"
NUMBER: /[0-9]{1,4}/
"""


def kinds():
    """name -> (question, output type, independent check of the text)."""
    import jsonschema
    import lark
    from outlines import types
    from outlines.types import CFG, Choice
    from pydantic import BaseModel, Field

    class Effort(BaseModel):
        minutes: int = Field(ge=1, le=600)
        difficulty: str = Field(json_schema_extra={"enum": ["easy", "medium", "hard"]})

    parser = lark.Lark(ARITHMETIC, start="start")

    def parses(text: str) -> bool:
        try:
            parser.parse(text)
        except lark.exceptions.LarkError:
            return False
        return True

    def valid_json(text: str) -> bool:
        try:
            jsonschema.validate(json.loads(text), Effort.model_json_schema())
        except (json.JSONDecodeError, jsonschema.ValidationError):
            return False
        return True

    date = r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    return {
        "free text": ("Say one sentence about it.", None, lambda t: True),
        "regex (types.date)": (
            "By what date should it be done? Answer YYYY-MM-DD.",
            types.date,
            lambda t: re.fullmatch(date, t) is not None,
        ),
        "choice (yes/no)": (
            "Is it a classification task? Answer yes or no.",
            Choice(["yes", "no"]),
            lambda t: t in ("yes", "no"),
        ),
        "grammar (CFG)": ("Write a sum that counts its steps.", CFG(ARITHMETIC), parses),
        "json (pydantic)": ("How long does it take, and how hard is it? JSON.", Effort, valid_json),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="default")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()

    from engine import Engine, Request, Sampling

    seeds = seed_instructions()
    rows, reference = [], None
    with Engine(args.model, use_cache=False) as engine:
        for name, (question, output_type, check) in kinds().items():
            requests = [
                Request(
                    messages=[{"role": "user", "content": f"Task: {seeds[i % len(seeds)]}\n{question}"}],
                    sampling=Sampling(max_tokens=args.max_tokens),
                    output_type=output_type,
                )
                for i in range(args.prompts)
            ]
            start = time.perf_counter()
            results = engine.run(requests)
            seconds = time.perf_counter() - start
            finished = [r for r in results if r.completions[0].finish_reason != "length"]
            matching = sum(check(r.text) for r in finished)
            tokens = sum(r.completions[0].output_tokens for r in results)
            tok_s = tokens / seconds
            reference = reference or tok_s
            rows.append((name, len(results), len(finished), matching, tok_s, tok_s / reference))
            print(f"  {name}: e.g. {[r.text for r in finished[:3]]}", flush=True)

    print(f"\nmodel: {args.model}; {args.prompts} prompts per kind, greedy, <= {args.max_tokens} tokens\n")
    print("| output type | requests | finished | finished and matching | tok/s | x free text |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, n, done, ok, tok_s, ratio in rows:
        share = f"{ok}/{done} ({100 * ok / done:.0f} %)" if done else "0/0"
        print(f"| {name} | {n} | {done} | {share} | {tok_s:.0f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
