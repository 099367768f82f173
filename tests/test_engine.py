"""The engine on the real vLLM (tiny random-weight model): batches, schemas, cache, failures."""

from __future__ import annotations

import json
import os

import jsonschema
import pytest
from pydantic import BaseModel, ConfigDict, Field

from engine.backends.base import Backend, Generation
from engine.errors import ConfigError
from engine.types import Request, Sampling

pytestmark = pytest.mark.engine


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=16)
    colour: str = Field(json_schema_extra={"enum": ["red", "green", "blue"]})
    count: int = Field(ge=0, le=9)


ITEM_SCHEMA = Item.model_json_schema()


def chat(text: str, **sampling) -> Request:
    return Request(messages=[{"role": "user", "content": text}], sampling=Sampling(**sampling))


def test_batch_generation_keeps_order_and_counts_tokens(engine):
    requests = [chat(f"Tell me about item {i}", max_tokens=8 + i) for i in range(6)]
    requests.append(Request(prompt="Once upon a time", sampling=Sampling(max_tokens=5)))
    results = engine.run(requests)
    assert [r.request.messages or r.request.prompt for r in results] == [
        r.messages or r.prompt for r in requests
    ]
    for i, result in enumerate(results[:6]):
        c = result.completions[0]
        assert not result.cached and result.prompt_tokens > 0
        assert 1 <= c.output_tokens <= 8 + i and c.finish_reason in ("stop", "length")
    assert engine.stats.requests == 7 and engine.stats.model_calls == 7


@pytest.mark.parametrize("output_type", [Item, ITEM_SCHEMA], ids=["pydantic", "json-schema"])
def test_structured_outputs_all_parse_and_validate(engine, output_type):
    requests = [
        Request(
            messages=[{"role": "user", "content": f"Item {i} as JSON"}],
            sampling=Sampling(temperature=0.8, max_tokens=96, seed=i),
            output_type=output_type,
        )
        for i in range(24)
    ]
    results = engine.run(requests)
    ok = [r for r in results if r.ok]
    assert len(ok) == 24, [(r.failure, r.text) for r in results if not r.ok]
    for r in ok:
        jsonschema.validate(json.loads(r.text), ITEM_SCHEMA)
        assert isinstance(r.parsed, Item if output_type is Item else dict)


def test_second_identical_run_is_all_cache_hits(engine, monkeypatch):
    requests = [chat(f"cache me {i}", temperature=0.7, max_tokens=12) for i in range(5)]
    first = engine.run(requests)
    calls = engine.stats.model_calls

    def no_model(*args, **kwargs):
        raise AssertionError("the model was called on a fully cached batch")

    monkeypatch.setattr(type(engine.backend), "stream", no_model)
    second = engine.run(requests)
    assert all(r.cached for r in second)
    assert [r.text for r in second] == [r.text for r in first]
    assert engine.stats.model_calls == calls and engine.stats.cache_hits == 5


def test_seed_and_schema_changes_miss_the_cache(engine):
    base = Request(
        messages=[{"role": "user", "content": "vary me"}],
        sampling=Sampling(temperature=0.9, max_tokens=10, seed=1),
    )
    engine.run([base])
    other_seed = Request(messages=base.messages, sampling=Sampling(temperature=0.9, max_tokens=10, seed=2))
    with_schema = Request(messages=base.messages, sampling=base.sampling, output_type=Item)
    results = engine.run([base, other_seed, with_schema])
    assert [r.cached for r in results] == [True, False, False]


def test_seeded_sampling_is_reproducible_across_batches(engine):
    target = chat("reproducible", temperature=1.0, max_tokens=16, seed=7)
    alone = engine.fork(use_cache=False).run([target])[0].text
    crowd = [chat(f"noise {i}", temperature=1.0, max_tokens=16, seed=i) for i in range(10)]
    mixed = engine.fork(use_cache=False).run(crowd[:5] + [target] + crowd[5:])[5].text
    assert alone == mixed


def test_truncated_json_is_reported_not_raised(engine):
    request = Request(
        messages=[{"role": "user", "content": "long item"}], sampling=Sampling(max_tokens=3), output_type=Item
    )
    result = engine.run([request])[0]
    assert result.failure == "truncated" and result.parsed is None
    assert engine.stats.truncated == 1 and engine.stats.retried == 1
    # the retry used twice the budget and is itself cached: a rerun answers both from the cache
    assert result.request.sampling.max_tokens == 6
    calls = engine.stats.model_calls
    again = engine.run([request])[0]
    assert again.cached and again.request.sampling.max_tokens == 6 and engine.stats.model_calls == calls


def test_prompt_longer_than_context_fails_alone(engine):
    too_long = Request(prompt="word " * 3000, sampling=Sampling(max_tokens=4))
    fine = Request(prompt="short", sampling=Sampling(max_tokens=4))
    results = engine.run([too_long, fine])
    assert results[0].failure == "too_long" and results[0].completions[0].text == ""
    assert results[1].ok and results[1].completions[0].output_tokens >= 1


def test_identical_requests_in_one_batch_are_generated_once(engine):
    request = chat("same twice", temperature=0.5, max_tokens=8, seed=3)
    results = engine.run([request, request])
    assert results[0].text == results[1].text and engine.stats.model_calls == 1


def test_n_completions_with_one_seed_differ(engine):
    result = engine.run([chat("several", temperature=1.0, max_tokens=12, n=3, seed=5)])[0]
    assert len(result.completions) == 3
    assert len({c.text for c in result.completions}) > 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": -1}, "temperature` must be >= 0"),
        ({"top_p": 0}, r"top_p` must be in \(0, 1\]"),
        ({"max_tokens": 0}, "max_tokens` must be an int >= 1"),
        ({"n": 0}, "n` must be an int >= 1"),
    ],
)
def test_sampling_validation_names_the_field(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Sampling(**kwargs)


def test_request_needs_exactly_one_of_messages_or_prompt():
    with pytest.raises(ConfigError, match="none is specified"):
        Request()
    with pytest.raises(ConfigError, match="both are specified"):
        Request(messages=[{"role": "user", "content": "x"}], prompt="x")


def test_cache_first_write_wins_across_handles_and_survives_reopening(tmp_path):
    from engine.cache import RequestCache

    path = tmp_path / "cache" / "requests.sqlite"
    first, racer = RequestCache(path), RequestCache(path)  # two processes on one cache file
    first.put("k", {"texts": ["replayed"]})
    racer.put("k", {"texts": ["a later, different greedy answer"]})
    racer.put("other", {"texts": ["new"]})
    assert first.get_many(["k", "other", "missing"]) == {
        "k": {"texts": ["replayed"]},
        "other": {"texts": ["new"]},
    }
    keys = [f"key-{i}" for i in range(1201)]  # more than one SQLite parameter chunk
    for key in keys:
        first.put(key, {"n": key})
    first.close(), racer.close()
    reopened = RequestCache(path)
    assert len(reopened) == 1203 and reopened.get_many(keys + keys[:3]) == {k: {"n": k} for k in keys}
    reopened.close()


class BatchSensitiveBackend(Backend):
    """Answers depend on the batch they ran in (as CPU numerics can); `kill_after` raises mid-batch."""

    kill_after: int | None = None
    batches: list[list[str]] = []

    def stream(self, requests, schemas, withdrawn=()):
        prompts = [r.prompt for r in requests]
        type(self).batches.append(prompts)
        for i, prompt in enumerate(prompts):
            if self.kill_after is not None and i == self.kill_after:
                raise KeyboardInterrupt("killed")
            yield (
                i,
                Generation(
                    [(f"{prompt} among {len(prompts)}: {hash(tuple(prompts)) & 0xFFFF}", "stop", 3)],
                    prompt_tokens=2,
                ),
            )


def test_a_batch_interrupted_by_a_kill_is_regenerated_whole_on_rerun(tiny_model, tmp_path):
    from engine.engine import Engine

    def engine(cache: str, kill_after: int | None = None) -> Engine:
        built = Engine(str(tiny_model), cache_dir=tmp_path / cache)
        built._backend_class = BatchSensitiveBackend
        BatchSensitiveBackend.kill_after, BatchSensitiveBackend.batches = kill_after, []
        return built

    batch = [Request(prompt=f"p{i}", sampling=Sampling(max_tokens=4)) for i in range(6)]
    whole = [r.text for r in engine("whole").run(batch)]

    with pytest.raises(KeyboardInterrupt):
        engine("killed", kill_after=4).run(batch)  # p0..p3 reached the cache
    rerun = engine("killed")
    assert [r.text for r in rerun.run(batch)] == whole
    assert BatchSensitiveBackend.batches == [[f"p{i}" for i in range(6)]]  # the same batch as the whole run
    assert (rerun.stats.cache_hits, rerun.stats.replayed, rerun.stats.model_calls) == (4, 4, 6)

    grown = engine("killed")  # later calls: the replayed batch finished, only new requests are generated
    more = batch + [Request(prompt="p6", sampling=Sampling(max_tokens=4))]
    assert [r.text for r in grown.run(more)][:6] == whole
    assert BatchSensitiveBackend.batches == [["p6"]] and grown.stats.replayed == 0


def test_a_second_engine_beside_the_in_process_one_gets_its_own_core_process(engine, tiny_model, tmp_path):
    """vLLM's parallel state is per process: one engine core runs in-process (deterministic scheduling);
    another started while it lives runs in its own process, and closing it leaves the first working.
    The switch is vLLM's environment variable: set only while the second one starts, so programs this
    process runs afterwards (the CLI in later tests) still get their engine core in-process."""
    from engine.backends.vllm import CORE_PROCESS_ENV
    from engine.engine import Engine

    batch = [chat(f"Say {w}.", temperature=1.0, seed=3, max_tokens=12) for w in ("hi", "yes", "no")]
    before = [r.text for r in engine.run(batch)]
    assert engine.backend.in_process and engine.backend.deterministic
    environ_before = os.environ.get(CORE_PROCESS_ENV)
    with Engine(str(tiny_model), cache_dir=tmp_path / "second", max_model_len=1024) as second:
        assert [r.text for r in second.run(batch)] == before  # a 3-request batch: same either way
        assert not second.backend.in_process
        assert os.environ.get(CORE_PROCESS_ENV) == environ_before
    after = engine.fork(cache_dir=tmp_path / "after")
    assert [r.text for r in after.run(batch)] == before and after.stats.model_calls == 3


def test_a_batch_runs_as_pieces_each_alone_in_the_engine(engine, monkeypatch):
    """Pieces of `piece_size` run one after another with nothing else in vLLM, so a request's neighbours
    are fixed by the batch (the Ray backend hands out the same pieces); an abandoned piece leaves no
    request behind to join the next one."""
    import dataclasses

    backend = engine.backend
    monkeypatch.setattr(backend, "options", dataclasses.replace(backend.options, piece_size=4))
    batch = [chat(f"Count to {i}.", temperature=1.0, seed=i, max_tokens=8 + i) for i in range(10)]
    enqueued, original = [], backend.llm.enqueue

    def recording(prompts, params, **kwargs):
        enqueued.append((len(prompts), backend.llm.llm_engine.has_unfinished_requests()))
        return original(prompts, params, **kwargs)

    monkeypatch.setattr(backend.llm, "enqueue", recording)
    whole = [r.text for r in engine.run(batch)]
    assert enqueued == [(4, False), (4, False), (2, False)]

    abandoned = backend.stream(batch, [None] * 10)
    next(abandoned)
    abandoned.close()
    assert not backend.llm.llm_engine.has_unfinished_requests()
    alone = [r.text for k in range(0, 10, 4) for r in engine.fork(use_cache=False).run(batch[k : k + 4])]
    assert alone == whole


def test_a_piece_never_reuses_prefixes_an_earlier_piece_cached(engine, monkeypatch):
    """A rerun after a kill starts with a cold prefix cache, and so does another replica: a piece whose
    prompts an earlier piece had cached would prefill them in a shorter pass (other numbers), so every
    piece starts from an empty prefix cache."""
    cached_tokens, step = [], engine.backend.llm.llm_engine.step

    def recording():
        outputs = step()
        cached_tokens.extend(o.num_cached_tokens for o in outputs if o.finished)
        return outputs

    monkeypatch.setattr(engine.backend.llm.llm_engine, "step", recording)
    preamble = "You are a careful assistant who answers every question with a short list. " * 6
    batch = [chat(preamble + f"Question {i}: name a colour.", max_tokens=6) for i in range(4)]
    first = [r.text for r in engine.fork(use_cache=False).run(batch)]
    cold, cached_tokens[:] = list(cached_tokens), []
    again = [r.text for r in engine.fork(use_cache=False).run(batch)]  # every block was cached just now
    assert len(cold) == 4 and cached_tokens == cold and again == first


@pytest.mark.parametrize(
    ("total", "available", "kv_gib"),
    [(24, 20, "3"), (24, 10, "3"), (24, 4, "2"), (256, 200, "16"), (2, 1, "1")],
)
def test_cpu_kv_cache_size_follows_the_machine_not_what_is_free(monkeypatch, total, available, kv_gib):
    from engine.backends import vllm_cpu as backend_vllm

    for name in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_NUM_OF_RESERVED_CPU"):
        monkeypatch.setenv(name, "")  # recorded, so what the call sets is undone after the test
        monkeypatch.delenv(name)
    monkeypatch.setattr(backend_vllm, "_memory_gib", lambda: (float(total), float(available)))
    assert backend_vllm.configure_cpu_runtime()["VLLM_CPU_KVCACHE_SPACE"] == kv_gib
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "7")  # the user's own setting is kept
    assert "VLLM_CPU_KVCACHE_SPACE" not in backend_vllm.configure_cpu_runtime()
