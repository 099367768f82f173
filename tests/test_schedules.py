"""The two schedules on the real vLLM (tiny model): same answers' validity, streaming, kill -9, occupancy."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pytest

from engine.flow import Job
from engine.types import Request, Sampling
from tests.tiny_runs import cached_requests, kill_once_cached

pytestmark = pytest.mark.engine

WORD = {
    "type": "object",
    "additionalProperties": False,
    "required": ["word"],
    "properties": {"word": {"type": "string", "maxLength": 60}},
}


def word_requests(n: int, max_tokens=lambda i: 8 + (i % 5) * 24) -> list[Request]:
    """Varied budgets, so requests finish at different steps; some are cut off and retried."""
    return [
        Request(
            messages=[{"role": "user", "content": f"A word for thing {i}"}],
            output_type=WORD,
            sampling=Sampling(temperature=0.8, seed=i, max_tokens=max_tokens(i)),
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def throughput_engine(tiny_model, tmp_path_factory):
    """The tiny model in the throughput schedule: its engine core runs in vLLM's own process."""
    from engine.engine import Engine

    engine = Engine(
        str(tiny_model),
        cache_dir=tmp_path_factory.mktemp("throughput"),
        max_model_len=1024,
        schedule="throughput",
    )
    yield engine
    engine.close()


@pytest.fixture
def fresh_throughput(throughput_engine, tmp_path):
    forked = throughput_engine.fork(cache_dir=tmp_path / "throughput-cache")
    yield forked
    forked.close()


def test_both_schedules_give_schema_valid_results_for_the_same_requests(engine, fresh_throughput):
    requests = word_requests(30)
    for built in (engine, fresh_throughput):
        results = built.run(requests)
        assert [r.request.messages for r in results] == [r.messages for r in requests]
        for result in results:
            if result.ok:
                jsonschema.validate(result.parsed, WORD)
            else:  # the random model may still run a string past twice its budget
                assert result.failure == "truncated" and result.completions[0].finish_reason == "length"
        assert sum(r.ok for r in results) >= 15, [r.failure for r in results]
        assert built.stats.occupancy.steps > 0
    assert engine.schedule == "deterministic" and engine.backend.in_process
    assert fresh_throughput.schedule == "throughput" and not fresh_throughput.backend.in_process


def test_throughput_caches_each_request_as_it_finishes_and_retries_join_the_running_batch(
    fresh_throughput, monkeypatch
):
    engine = fresh_throughput
    backend, llm_engine = engine.backend, engine.backend.llm.llm_engine
    streams, while_running = [], []
    stream, put = type(backend).stream, engine.cache.put

    def counting_stream(self, requests, schemas, withdrawn=()):
        streams.append(len(requests))
        yield from stream(self, requests, schemas, withdrawn)

    def recording_put(key, record, batch=None):
        while_running.append(llm_engine.has_unfinished_requests())
        put(key, record, batch)

    monkeypatch.setattr(type(backend), "stream", counting_stream)
    monkeypatch.setattr(engine.cache, "put", recording_put)
    results = engine.run(word_requests(24, max_tokens=lambda i: 4 if i % 3 == 0 else 64))
    assert streams == [24]  # one backend call: the retries of the 4-token answers joined it
    assert engine.stats.retried >= 8 and engine.stats.model_calls == 24 + engine.stats.retried
    assert len(while_running) == engine.stats.model_calls and sum(while_running) >= len(while_running) // 2
    retried = [r for i, r in enumerate(results) if i % 3 == 0]
    assert all(r.request.sampling.max_tokens == 8 for r in retried)  # the answer of the doubled budget
    # A rerun is served from the cache, retries included.
    again = engine.fork(cache_dir=engine.cache_dir)
    assert [r.text for r in again.run(word_requests(24, max_tokens=lambda i: 4 if i % 3 == 0 else 64))] == [
        r.text for r in results
    ]
    assert again.stats.model_calls == 0 and again.stats.retried == engine.stats.retried
    again.close()


class WordChain:
    """A two-stage flow: 12 word requests, each answer leading to one more request built from it."""

    def __init__(self, busy=lambda: False):
        self.busy, self.answers, self.read = busy, [], []

    def jobs(self) -> list:
        return [Job(r, stage=0, tag=i) for i, r in enumerate(word_requests(12))]

    def on_result(self, job, result) -> list:
        self.answers.append(result)
        if job.stage == 1:
            return []
        self.read.append((job.tag, self.busy()))  # was the engine still running others?
        word = result.parsed["word"] if result.ok else "nothing"
        request = Request(
            messages=[{"role": "user", "content": f"Another word like {word!r}"}],
            output_type=WORD,
            sampling=Sampling(temperature=0.8, seed=100 + job.tag, max_tokens=32),
        )
        return [Job(request, stage=1, tag=job.tag)]


def test_a_flow_s_follow_ups_join_the_running_batch_in_throughput_and_wait_for_their_wave_otherwise(
    engine, fresh_throughput, monkeypatch
):
    for runner in (fresh_throughput, engine):
        backend, streams = runner.backend, []
        stream = type(backend).stream

        def counting_stream(self, requests, schemas, withdrawn=(), stream=stream, streams=streams):
            streams.append(len(requests))
            yield from stream(self, requests, schemas, withdrawn)

        monkeypatch.setattr(type(backend), "stream", counting_stream)
        throughput = runner.schedule == "throughput"
        chain = WordChain(backend.llm.llm_engine.has_unfinished_requests if throughput else (lambda: False))
        runner.flow(chain.jobs(), chain.on_result)
        monkeypatch.undo()
        assert len(chain.answers) == 24 and sorted(tag for tag, _ in chain.read) == list(range(12))
        if throughput:  # one backend call; follow-ups were sent while others still ran
            assert len(streams) == 1 and any(busy for _, busy in chain.read)
        else:  # a batch per stage (and per retry pass), stage 0's first
            assert len(streams) >= 2 and streams[0] <= 12
    # A rerun of the flow is answered from the cache, follow-ups included.
    again = fresh_throughput.fork(cache_dir=fresh_throughput.cache_dir)
    chain = WordChain()
    again.flow(chain.jobs(), chain.on_result)
    assert again.stats.model_calls == 0 and len(chain.answers) == 24
    again.close()


def test_a_flow_withdraws_what_is_no_longer_wanted_and_stops_it_in_the_running_batch(fresh_throughput):
    engine = fresh_throughput
    answers: list = []

    def enough(job, result):  # after 3 first answers nothing else is wanted
        answers.append(result)
        return []

    # Long budgets, so the withdrawn ones are still running when the third answer is read.
    jobs = [
        Job(r, stage=0, tag=i)
        for i, r in enumerate(word_requests(16, max_tokens=lambda i: 4 + (i % 4) * 200))
    ]
    engine.flow(jobs, enough, lambda job: sum(r is not None for r in answers) < 3)
    read, withdrawn = [r for r in answers if r is not None], answers.count(None)
    assert len(answers) == 16 and len(read) >= 3 and withdrawn == engine.stats.withdrawn > 0
    assert engine.stats.model_calls < 16 + engine.stats.retried  # the withdrawn were stopped, not run out
    assert not engine.backend.llm.llm_engine.has_unfinished_requests()
    # The engine is clean for the next batch, and what was withdrawn is asked afresh then.
    again = engine.run([j.request for j in jobs])
    assert len(again) == 16 and all(r.completions for r in again)
    # All cached now: the cut-off comes while the cached answers are handed over, and every job is still
    # read exactly once (3 answers, then 13 withdrawn), with no model call.
    cached, answers[:] = engine.fork(cache_dir=engine.cache_dir), []
    read_tags: list[int] = []
    cached.flow(
        jobs,
        lambda job, result: read_tags.append(job.tag) or enough(job, result),
        lambda job: sum(r is not None for r in answers) < 3,
    )
    assert sorted(read_tags) == list(range(16)) and answers.count(None) == 13
    assert cached.stats.model_calls == 0 and cached.stats.withdrawn == 13
    cached.close()


def test_occupancy_comes_from_the_scheduler_and_reaches_the_stats_line(fresh_throughput):
    engine = fresh_throughput
    engine.run(word_requests(40))
    o = engine.stats.occupancy
    assert o.slots == engine.backend.slots == engine.capacity > 0
    assert 0 < o.mean_running <= 40 and 0 < o.percent <= 100 and o.tokens >= engine.stats.output_tokens
    summary, stats = engine.stats.summary(), engine.stats.to_dict()
    assert f"occupancy {o.percent:.0f}%" in summary and f"{o.steps} steps" in summary
    assert stats["occupancy"]["engine_steps"] == o.steps and stats["occupancy"]["slots"] == o.slots


def test_a_vllm_without_a_guarded_internal_warns_once_and_runs(tiny_model, tmp_path, caplog):
    from engine.backends import vllm as backend_vllm
    from engine.engine import Engine

    # vLLM's stat logger manager is absent when stats are off: occupancy is lost, nothing else.
    backend_vllm._missing_internals.clear()
    with (
        caplog.at_level(logging.WARNING, logger="engine.backends.vllm"),
        Engine(
            str(tiny_model),
            cache_dir=tmp_path,
            max_model_len=1024,
            schedule="throughput",
            extra={"disable_log_stats": True},
        ) as engine,
    ):
        results = engine.run(word_requests(6))
    assert len(results) == 6 and engine.stats.model_calls >= 6 and engine.stats.occupancy.steps == 0
    warnings = [r.message for r in caplog.records if "this vLLM has no" in r.getMessage()]
    assert len(warnings) == 1 and "occupancy is not measured" in caplog.text
    # The other guards, on stand-ins of a vLLM without them.
    assert not backend_vllm._compile_grammars_on_add(
        SimpleNamespace(
            llm_engine=SimpleNamespace(
                engine_core=SimpleNamespace(engine_core=SimpleNamespace(structured_output_manager=object()))
            )
        )
    )
    assert "reruns may differ" in caplog.text
    aborted = []
    stand_in = SimpleNamespace(
        llm=SimpleNamespace(llm_engine=SimpleNamespace(abort_request=lambda ids: aborted.extend(ids)))
    )
    backend_vllm.VLLMBackend._abort(stand_in, ["7-ab"])
    assert aborted == ["7-ab"] and "abort_request(internal=True)" in caplog.text


KILLED_RUN = """
import json, sys
from engine import Engine, Request, Sampling

def main():
    model, cache, out = sys.argv[1:4]
    requests = [Request(messages=[{"role": "user", "content": f"Describe object number {i}."}],
                        sampling=Sampling(temperature=0.9, seed=i, max_tokens=16 + 8 * (i % 40)))
                for i in range(160)]
    with Engine(model, cache_dir=cache, max_model_len=1024, schedule="throughput") as engine:
        results = engine.run(requests)
    with open(out, "w") as f:
        for r in results:
            f.write(json.dumps({"prompt": r.request.messages[0]["content"], "text": r.text,
                                "cached": r.cached}) + "\\n")
    print(json.dumps(engine.stats.to_dict()))

if __name__ == "__main__":
    main()
"""


def test_kill_9_in_throughput_loses_nothing_doubles_nothing_and_reruns_only_the_missing(tiny_model, tmp_path):
    script, out, cache = tmp_path / "run.py", tmp_path / "out.jsonl", tmp_path / "cache"
    script.write_text(KILLED_RUN)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "INSTRUCTFORGE_NO_PROGRESS": "1",
        "PYTHONPATH": str(Path.cwd()),
    }
    command = [sys.executable, str(script), str(tiny_model), str(cache), str(out)]
    before = kill_once_cached(command, env, cache)
    assert 0 < before < 160 and not out.exists(), "the kill came before the first or after the last answer"

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == [f"Describe object number {i}." for i in range(160)]  # each once
    assert sum(r["cached"] for r in rows) == before and cached_requests(cache) == 160
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    assert stats["model_calls"] == 160 - before and stats["replayed"] == 0
