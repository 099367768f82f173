"""Generation throughput: vLLM (through our Engine) vs Hugging Face `generate`, and JSON-constrained vs
unconstrained decoding, on the same model, prompts and batch, in one run.

    python benchmarks/generation.py                  # default model, 64 prompts x 128 tokens
    python benchmarks/generation.py --model /path/to/hf-folder --prompts 32 --max-tokens 64

Prompts are the real SELF-INSTRUCT seed instructions (../shared/data). Greedy decoding everywhere; tok/s
counts generated tokens (HF's padding after a sequence's end is not counted) over generation time only
(model loading and engine start-up excluded). Prints a table and the two ratios the project tracks:
vLLM / HF (goal >= 2.5x on CPU) and constrained / unconstrained (goal >= 0.7x).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("INSTRUCTFORGE_NO_PROGRESS", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# A realistic structured target: what the Self-Instruct bootstrap step asks for.
SCHEMA = {
    "type": "object",
    "properties": {
        "tasks": {
            "type": "array",
            "minItems": 1,
            "maxItems": 4,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["instruction", "is_classification"],
                "properties": {
                    "instruction": {"type": "string", "maxLength": 200},
                    "is_classification": {"type": "boolean"},
                },
            },
        },
    },
    "required": ["tasks"],
    "additionalProperties": False,
}


def load_messages(count: int) -> list[list[dict[str, str]]]:
    rows = [json.loads(line) for line in (SHARED_DATA / "self_instruct_seed_tasks.jsonl").open()]
    return [
        [
            {
                "role": "user",
                "content": "Here is a task: "
                + rows[i % len(rows)]["instruction"]
                + "\nWrite a few new, different tasks like it.",
            }
        ]
        for i in range(count)
    ]


def bench_hf(model_path: str, messages, max_tokens: int, batch_size: int) -> tuple[int, float]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(
        model_path, dtype=torch.bfloat16, attn_implementation="sdpa"
    ).eval()
    texts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages]
    generated, seconds = 0, 0.0
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            texts[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
        )
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                **batch, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        seconds += time.perf_counter() - t0
        new = out[:, batch["input_ids"].shape[1] :]
        for row in new.tolist():  # count up to and including the first end-of-sequence token
            ends = [i for i, t in enumerate(row) if t == tokenizer.eos_token_id]
            generated += ends[0] + 1 if ends else len(row)
    del model
    return generated, seconds


def bench_vllm(engine, messages, max_tokens: int, schema=None) -> tuple[int, float, int]:
    from engine.types import Request, Sampling

    requests = [
        Request(messages=m, sampling=Sampling(max_tokens=max_tokens), output_type=schema) for m in messages
    ]
    engine.stats.generation_seconds = 0.0
    before = engine.stats.output_tokens_generated
    results = engine.run(requests)
    valid = sum(r.ok for r in results)
    return engine.stats.output_tokens_generated - before, engine.stats.generation_seconds, valid


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="default")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--hf-batch-size", type=int, default=64)
    parser.add_argument("--compiled", action="store_true", help="vLLM compiled mode (slower start)")
    args = parser.parse_args()

    from engine.engine import Engine

    messages = load_messages(args.prompts)
    engine = Engine(args.model, use_cache=False, retry_truncated=False, enforce_eager=not args.compiled)
    hf_tokens, hf_seconds = bench_hf(engine.model.path, messages, args.max_tokens, args.hf_batch_size)
    bench_vllm(engine, messages[:4], 8)  # warm-up: engine start, first-step allocations
    rows = [("HF generate (bf16, sdpa)", hf_tokens, hf_seconds, None)]
    for label, schema in (("vLLM unconstrained", None), ("vLLM JSON-constrained", SCHEMA)):
        tokens, seconds, valid = bench_vllm(engine, messages, args.max_tokens, schema)
        rows.append((label, tokens, seconds, valid))
    engine.close()

    print(
        f"\nmodel {engine.model.name}, {args.prompts} prompts, greedy, max {args.max_tokens} tokens, "
        f"{len(os.sched_getaffinity(0))} cores"
    )
    print(f"{'backend':<26}{'tokens':>8}{'seconds':>9}{'tok/s':>9}{'valid':>8}")
    for label, tokens, seconds, valid in rows:
        shown = "-" if valid is None else f"{valid}/{args.prompts}"
        print(f"{label:<26}{tokens:>8}{seconds:>9.2f}{tokens / seconds:>9.1f}{shown:>8}")
    rate = {label: tokens / seconds for label, tokens, seconds, _ in rows}
    vllm_vs_hf = rate["vLLM unconstrained"] / rate["HF generate (bf16, sdpa)"]
    constrained = rate["vLLM JSON-constrained"] / rate["vLLM unconstrained"]
    print(f"ratio vLLM / HF generate: {vllm_vs_hf:.2f}x (goal >= 2.5x)")
    print(f"ratio constrained / unconstrained: {constrained:.2f}x (goal >= 0.7x)")


if __name__ == "__main__":  # vLLM spawns processes: keep the entry point guarded
    main()
