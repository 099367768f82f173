"""InsTag tagger logic without a model: input shapes, tagging requests, sharded resume, Cf-D, F1, metrics."""

from __future__ import annotations

import json

import pytest

from engine.errors import ConfigError, InputError
from engine.run.io import write_jsonl
from tagger.evaluate import align, tag_f1
from tagger.metrics import complexity, diversity, report, tag_recall, write_plots
from tagger.queries import Query, iter_queries
from tagger.sampling import complexity_first_diverse, selection_report
from tagger.shards import TagRun, tag_pending_shards
from tagger.tagging import TagConfig, build_request, resolve_prompt_format, tag_shard
from tests.fakes import ScriptedEngine


def write(tmp_path, rows, name="data.jsonl"):
    path = tmp_path / name
    write_jsonl(path, rows)
    return path


def texts(path, **kwargs):
    return [(q.id, q.turn, q.text) for q in iter_queries(path, **kwargs)]


# ---- input shapes -------------------------------------------------------------------------------------


def test_alpaca_shape_joins_instruction_and_input(tmp_path):
    path = write(
        tmp_path,
        [
            {"instruction": "Translate.", "input": "Bonjour", "output": "Hello"},
            {"id": "x7", "instruction": "Tell a joke.", "input": ""},
            {"instruction": "Sum up.", "input": "   "},
        ],
    )
    assert texts(path) == [(0, 0, "Translate.\nBonjour"), ("x7", 0, "Tell a joke."), (2, 0, "Sum up.")]


def test_sharegpt_and_openai_shapes_give_one_query_per_user_turn(tmp_path):
    path = write(
        tmp_path,
        [
            {
                "id": "sg",
                "conversations": [
                    {"from": "system", "value": "be nice"},
                    {"from": "human", "value": "Hi"},
                    {"from": "gpt", "value": "Hello"},
                    {"from": "human", "value": "Joke?"},
                ],
            },
            {
                "id": "oa",
                "messages": [
                    {"role": "system", "content": "s"},
                    {"role": "user", "content": "Q1"},
                    {"role": "assistant", "content": "A1"},
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": "Q2"}, {"type": "image_url", "image_url": {}}],
                    },
                ],
            },
            {"id": "bot-only", "conversations": [{"from": "gpt", "value": "monologue"}]},
            {"prompt": "Bare prompt"},
        ],
    )
    assert texts(path) == [
        ("sg", 0, "Hi"),
        ("sg", 1, "Joke?"),
        ("oa", 0, "Q1"),
        ("oa", 1, "Q2"),
        (3, 0, "Bare prompt"),
    ]


def test_query_field_override_and_other_formats(tmp_path):
    path = write(tmp_path, [{"question": "Why?"}, {"question": "How?"}])
    assert texts(path, query_field="question") == [(0, 0, "Why?"), (1, 0, "How?")]
    path = write(
        tmp_path,
        [{"dialog": [{"role": "user", "content": "A"}, {"role": "user", "content": "B"}]}],
        "d.jsonl",
    )
    assert texts(path, query_field="dialog") == [(0, 0, "A"), (0, 1, "B")]
    import datasets

    datasets.Dataset.from_list([{"instruction": "From parquet", "input": "x"}]).to_parquet(
        tmp_path / "d.parquet"
    )
    assert texts(tmp_path / "d.parquet") == [(0, 0, "From parquet\nx")]
    datasets.Dataset.from_list([{"prompt": "From folder"}]).save_to_disk(str(tmp_path / "ds"))
    assert texts(tmp_path / "ds") == [(0, 0, "From folder")]


@pytest.mark.parametrize(
    ("rows", "kwargs", "message"),
    [
        ([{"text": "hi"}], {}, r"data.jsonl:1: no known query shape .*record has: text.*--query-field"),
        (
            [{"conversations": [{"speaker": "human", "text": "hi"}]}],
            {},
            r"field `conversations`: items must be `role`\+`content`",
        ),
        ([{"conversations": "hi"}], {}, r"field `conversations`: must be list"),
        ([{"instruction": "a", "input": 3}], {}, r"field `input`: must be a string"),
        ([{"q": "a"}], {"query_field": "question"}, r"field `question`: missing"),
        ([{"id": [1], "prompt": "a"}], {}, r"field `id`: must be a string or int"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, rows, kwargs, message):
    path = write(tmp_path, rows)
    with pytest.raises(InputError, match=message):
        texts(path, **kwargs)


# ---- tagging requests ---------------------------------------------------------------------------------


def test_prompt_formats():
    assert resolve_prompt_format("auto", "InsTagger") == "instagger"
    assert resolve_prompt_format(None, "SmolLM2-135M-Instruct") == "chat"
    assert resolve_prompt_format("instagger", "SmolLM2") == "instagger"
    with pytest.raises(ConfigError, match="prompt_format"):
        resolve_prompt_format("vicuna", "x")
    raw = build_request("Fix my essay.", TagConfig(prompt_format="instagger"))
    assert raw.messages is None and raw.prompt.startswith("A chat between a curious user and an artificial")
    assert " USER: " in raw.prompt and raw.prompt.endswith("Fix my essay. ASSISTANT:")
    chat = build_request("Fix my essay.", TagConfig())
    assert chat.prompt is None and chat.messages[0]["role"] == "user"
    assert chat.messages[0]["content"].endswith("Fix my essay.")
    assert chat.sampling.temperature == 0 and chat.sampling.max_tokens == 512
    assert chat.format_version != raw.format_version
    cut = build_request("x" * 50, TagConfig(max_query_chars=10))
    assert cut.messages[0]["content"].endswith("\n" + "x" * 10)
    with pytest.raises(ConfigError, match="max_tokens"):
        TagConfig(max_tokens=0)


def scripted_tagger(bad=()):
    def respond(request):
        query = (request.prompt or request.messages[-1]["content"]).rsplit("\n", 1)[-1]
        if any(b in query for b in bad):
            return '{"not": "a list"}'
        return [
            {"tag": f" tag {query[:6]} ", "explanation": "because"},
            {"tag": "  ", "explanation": ""},
            {"tag": "shared", "explanation": "all"},
            {"tag": "shared ", "explanation": "again"},
        ]

    return ScriptedEngine(respond)


def test_answers_cut_off_twice_get_one_last_try():
    def respond(request):
        if request.sampling.max_tokens < 2048:
            return '[{"tag": "cut off'  # unclosed: the engine reports `truncated` at the length limit
        return [{"tag": "long answer", "explanation": "finished with room to spare"}]

    engine = ScriptedEngine(respond)
    engine_run = engine.run

    def run(requests):  # the scripted double does not retry; mark unclosed answers as cut off by length
        results = engine_run(requests)
        for r in results:
            if r.text.endswith("cut off"):
                r.completions[0].failure = "truncated"
        return results

    engine.run = run
    rows = tag_shard(engine, [Query(1, 0, "a"), Query(2, 0, "b")], TagConfig())
    assert [len(b) for b in engine.batches] == [2, 2]
    assert [r.sampling.max_tokens for r in engine.batches[1]] == [2048, 2048]
    assert rows[0]["failure"] is None and rows[0]["tags"][0]["tag"] == "long answer"
    rows = tag_shard(engine, [Query(1, 0, "a")], TagConfig(last_try_max_tokens=None))
    assert rows[0]["failure"] == "truncated" and len(engine.batches) == 3


def test_tag_shard_is_one_batch_and_keeps_failures():
    engine = scripted_tagger(bad=("bad",))
    queries = [Query("a", 0, "hello"), Query("a", 1, "bad one"), Query(7, 0, "world")]
    rows = tag_shard(engine, queries, TagConfig())
    assert len(engine.batches) == 1 and len(engine.batches[0]) == 3
    assert rows[0] == {
        "id": "a",
        "turn": 0,
        "query": "hello",
        "failure": None,
        "tags": [{"tag": "tag hello", "explanation": "because"}, {"tag": "shared", "explanation": "all"}],
    }
    assert rows[1]["failure"] == "invalid" and rows[1]["tags"] == []
    assert rows[2]["id"] == 7 and rows[2]["tags"][0]["tag"] == "tag world"


# ---- sharded, resumable driver ------------------------------------------------------------------------


def settings():
    return {"model": "scripted@0", "shard_size": 3}


def test_shards_resume_without_loss_or_doubling(tmp_path):
    data = write(tmp_path, [{"id": i, "instruction": f"task {i}"} for i in range(8)])
    reference = TagRun(tmp_path / "ref", settings=settings())
    assert reference.prepare(data, shard_size=3)["shards"] == 3
    tag_pending_shards(scripted_tagger(), reference, TagConfig())
    assert reference.merge() == {"rows": 8, "tagged": 8, "tags": 16}

    run = TagRun(tmp_path / "run", settings=settings())
    run.prepare(data, shard_size=3)
    calls = []

    def dies_on_second_shard(engine, queries, config):
        calls.append(queries[0].id)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed mid-run
        return tag_shard(engine, queries, config)

    with pytest.raises(KeyboardInterrupt):
        tag_pending_shards(scripted_tagger(), run, TagConfig(), tag=dies_on_second_shard)
    assert run.pending_shards() == [1, 2]
    rerun = TagRun(tmp_path / "run", settings=settings())
    engine = scripted_tagger()
    speed = tag_pending_shards(engine, rerun, TagConfig())
    assert speed["shards_run"] == 2 and engine.stats.requests == 5
    rerun.merge()
    assert (tmp_path / "run" / "tags.jsonl").read_bytes() == (tmp_path / "ref" / "tags.jsonl").read_bytes()
    with pytest.raises(ConfigError, match=r"other settings \(shard_size; shard_size: 3 there, 4 now\)"):
        TagRun(tmp_path / "run", settings={**settings(), "shard_size": 4})


# ---- Cf-D -------------------------------------------------------------------------------------------


def test_cfd_known_example():
    tag_sets = [["a"], ["a", "b", "c"], ["b", "d"], ["c"], ["a", "b"], ["e"], [], ["d"]]
    # Sorted by tag count (stable): 1(abc) 2(bd) 4(ab) 0(a) 3(c) 5(e) 7(d) 6().
    # Pass 1 (covered {}): 1 +abc, 2 +d, 4 no, 0 no, 3 no, 5 +e, 7 no -> [1, 2, 5]
    # Pass 2 over [4, 0, 3, 7, 6]: 4 +ab, 0 no, 3 +c, 7 +d, 6 no -> [4, 3, 7]
    # Pass 3 over [0, 6]: 0 +a -> stop at n = 7
    selection = complexity_first_diverse(tag_sets, 7)
    assert selection.indices == [1, 2, 5, 4, 3, 7, 0]
    assert selection.per_pass == [3, 3, 1] and not selection.exhausted
    assert complexity_first_diverse(tag_sets, 2).indices == [1, 2]


def test_cfd_stops_when_a_pass_adds_nothing():
    tag_sets = [["a"], [], ["a"], []]
    selection = complexity_first_diverse(tag_sets, 10)
    assert selection.indices == [0, 2] and selection.exhausted and selection.per_pass == [1, 1, 0]
    summary = selection_report(tag_sets, selection, 10)
    assert summary["coverage"] == 1.0 and summary["avg_tags_selected"] == 1.0 and summary["selected"] == 2
    with pytest.raises(ConfigError, match="`n` must be an int >= 1"):
        complexity_first_diverse(tag_sets, 0)


# ---- evaluation and metrics ---------------------------------------------------------------------------


class TableEmbedder:
    """Hand-made unit vectors: tags in the same group are parallel (cosine 1), all others orthogonal."""

    def __init__(self, groups):
        self.dims = {t: i for i, group in enumerate(groups) for t in group}
        self.next = len(groups)
        self.calls = []

    def embed(self, texts):
        import numpy as np

        self.calls.append(list(texts))
        out = np.zeros((len(texts), 256), dtype=np.float32)
        for row, t in enumerate(texts):
            if t not in self.dims:
                self.dims[t], self.next = self.next, self.next + 1
            out[row, self.dims[t]] = 1
        return out


def test_exact_and_fuzzy_f1_known_example():
    predicted = [["Math", "poem"], ["coding", "humor", "travel"]]
    gold = [["math", "poetry writing"], ["coding"]]
    exact = tag_f1(predicted, gold)["exact"]
    # exact matches: math, coding -> P = 2/5, R = 2/3, F1 = 2PR/(P+R) = 0.5
    assert exact == {"precision": 0.4, "recall": 0.6667, "f1": 0.5}
    embedder = TableEmbedder([["math"], ["poem", "poetry writing"], ["coding"], ["humor"], ["travel"]])
    fuzzy = tag_f1(predicted, gold, embedder=embedder)["fuzzy"]
    # fuzzy: predicted math, poem, coding match (3/5); gold all matched (3/3)
    assert fuzzy["precision"] == 0.6 and fuzzy["recall"] == 1.0 and fuzzy["f1"] == 0.75
    pred, ref, missing = align({("a", 0): ["x"]}, {("a", 0): ["x"], ("b", 0): ["y"]})
    assert pred == [["x"], []] and ref == [["x"], ["y"]] and missing == 1


def test_metrics_and_plots(tmp_path):
    a = [["x", "y"], ["x"], ["z", "x", "y"]]
    b = [["x"], ["w"]]
    assert diversity(a) == 3 and complexity(a) == 2.0
    assert tag_recall(a, b) == pytest.approx(1 / 3) and tag_recall(b, a) == 0.5
    summary = report({"a": a, "b": b})
    assert summary["union_diversity"] == 4 and summary["tag_recall"]["a"]["b"] == 0.3333
    assert summary["datasets"]["a"]["frequency"]["top"][0] == {"tag": "x", "queries": 3}
    paths = write_plots({"a": a, "b": b}, tmp_path)
    assert [p.name for p in paths] == [
        "diversity_complexity.png",
        "tag_frequency.png",
        "top_tags_00_a.png",
        "top_tags_01_b.png",
    ]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)


def test_tag_rows_json_roundtrip(tmp_path):
    q = Query("s1", 2, "text")
    assert Query.from_dict(json.loads(json.dumps(q.to_dict()))) == q


def test_a_command_never_writes_into_another_commands_run(tmp_path, run_cli):
    from engine.run.directory import RunDir

    run = RunDir(tmp_path / "tags")
    run.claim("tag", {"input": "x"})
    run.mark_done("queries")  # work that normalize's outputs would mix with
    tagged = tmp_path / "tagged.jsonl"
    tagged.write_text('{"id": 1, "query": "q", "tags": [{"tag": "a", "explanation": "e"}]}\n')
    code, _, err = run_cli(["normalize", "--input", str(tagged), "--out", str(run.path)])
    assert code == 2 and "holds a `tag` run, not a `normalize` one" in err
    assert sorted(p.name for p in run.path.iterdir()) == [".done", ".lock", "run_config.json"]  # its own
