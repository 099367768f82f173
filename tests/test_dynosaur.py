"""DYNOSAUR generator: metadata, schema-constrained task design, filters, instances, growth, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.run.directory import RunDir
from generators.dynosaur.instances import build_instances, label_space, render_input
from generators.dynosaur.metadata import DatasetMeta, build_meta, card_summary, is_id_like
from generators.dynosaur.pipeline import DynosaurConfig, design_dataset, run_dynosaur
from generators.dynosaur.sources import collect_metadata
from generators.dynosaur.tasks import filter_tasks, is_degenerate, task_request, task_schema
from tests.fakes import ScriptedEngine

CARD = """---
license: {license}
task_categories:
- {category}
---
# {name}

## Dataset Description

### Dataset Summary

{summary}

### Languages

English.
"""

REVIEWS = [
    ("A warm, funny film with a great cast.", 1),
    ("Dull plot and wooden acting.", 0),
    ("I laughed the whole way through.", 1),
    ("Two hours I will never get back.", 0),
    ("The soundtrack alone is worth it.", 1),
    ("Predictable from the first scene.", 0),
]


def save_sentiment(root: Path, name: str = "movie_reviews") -> Path:
    """save_to_disk DatasetDict with a ClassLabel, an id field, a `valid_votes` field and a card."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features(
        {
            "review_id": Value("string"),
            "review": Value("string"),
            "sentiment": ClassLabel(names=["negative", "positive"]),
            "valid_votes": Value("int32"),
        }
    )
    data = {
        "review_id": [f"r{i}" for i in range(len(REVIEWS))],
        "review": [r for r, _ in REVIEWS],
        "sentiment": [s for _, s in REVIEWS],
        "valid_votes": list(range(len(REVIEWS))),
    }
    path = root / name
    DatasetDict(
        {
            "train": Dataset.from_dict(data, features=features),
            "test": Dataset.from_dict(data, features=features),
        }
    ).save_to_disk(str(path))
    (path / "README.md").write_text(
        CARD.format(
            license="cc-by-4.0",
            category="text-classification",
            name=name,
            summary="Short movie reviews labelled as positive or negative.",
        ),
        encoding="utf-8",
    )
    return path


def write_jsonl_dataset(root: Path, name: str, rows: list[dict], card: dict | None = None) -> Path:
    path = root / name
    path.mkdir(parents=True)
    with open(path / "train.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    if card is not None:
        (path / "README.md").write_text(CARD.format(name=name, **card), encoding="utf-8")
    return path


QA_ROWS = [
    {"id": i, "question": q, "choices": c, "answer": a}
    for i, (q, c, a) in enumerate(
        [
            ("Which planet is called the red planet?", ["Venus", "Mars", "Jupiter"], "Mars"),
            ("What do bees make?", ["honey", "silk", "wax paper"], "honey"),
            ("How many legs does a spider have?", ["six", "eight", "ten"], "eight"),
            ("Which metal is liquid at room temperature?", ["iron", "mercury", "tin"], "mercury"),
        ]
    )
]


def write_qa(root: Path, name: str = "trivia_qa_mini") -> Path:
    return write_jsonl_dataset(
        root,
        name,
        QA_ROWS,
        {
            "license": "mit",
            "category": "question-answering",
            "summary": "Trivia questions with three answer options and the correct answer.",
        },
    )


@pytest.fixture
def collection_dir(tmp_path) -> Path:
    root = tmp_path / "collection"
    root.mkdir()
    save_sentiment(root)
    write_qa(root)
    return root


def designer(request):
    """Scripted task designer: two tasks over the dataset's real fields, worded per setting."""
    dataset = json.loads(request.messages[-1]["content"].rsplit("Dataset:\n", 1)[1].split("\n")[0])
    fields = list(dataset["fields"])
    first = fields[0]
    last = next((f for f, kind in dataset["fields"].items() if kind.startswith("label")), fields[-1])
    if "description" in dataset:
        return {
            "tasks": [
                {
                    "instruction": f"Read the {first} and give its {last}.",
                    "input_fields": [first],
                    "output_field": last,
                },
                {
                    "instruction": f"Write a {first} that matches the given {last}.",
                    "input_fields": [last],
                    "output_field": first,
                },
            ]
        }
    return {
        "tasks": [
            {
                "instruction": f"Which {last} fits this {first}? Answer in a word or two.",
                "input_fields": [first],
                "output_field": last,
            }
        ]
    }


# ---------------------------------------------------------------------------------- metadata


def test_metadata_from_save_to_disk_with_classlabel_and_card(tmp_path):
    collection = collect_metadata([save_sentiment(tmp_path)])
    (meta,) = collection.datasets
    assert meta.name == "movie_reviews" and meta.license == "cc-by-4.0"
    assert meta.summary == "Short movie reviews labelled as positive or negative."
    assert meta.task_categories == ["text-classification"]
    # review_id is id-like; valid_votes merely contains "id" and stays (upstream dropped it)
    assert meta.fields == {"review": "text", "sentiment": "label", "valid_votes": "number"}
    assert meta.dropped_fields == {"review_id": "id_like"}
    assert meta.label_names == {"sentiment": ["negative", "positive"]}
    assert meta.rows[0]["sentiment"] == "positive" and meta.rows[1]["sentiment"] == "negative"
    assert len(meta.rows) == len(REVIEWS)  # train only: the test split is not sampled


def test_metadata_from_jsonl_folder_with_card(tmp_path):
    (meta,) = collect_metadata([write_qa(tmp_path)]).datasets
    assert meta.license == "mit" and meta.summary.startswith("Trivia questions")
    assert meta.fields == {"question": "text", "choices": "list", "answer": "text"}
    view = meta.prompt_view(with_summary=False)
    assert "description" not in view and len(view["examples"]) == 2


def test_rows_per_split_and_value_cut_in_prompt(tmp_path):
    rows = [{"text": "word " * 400, "label": str(i % 2)} for i in range(150)]
    (meta,) = collect_metadata([write_jsonl_dataset(tmp_path, "long", rows)]).datasets
    assert len(meta.rows) == 100 and meta.license == "unspecified" and meta.summary == ""
    assert len(meta.prompt_view(True)["examples"][0]["text"]) == 1000


def test_skips_are_counted_by_reason(tmp_path):
    from datasets import Dataset, Features, Image, Value

    Dataset.from_dict(
        {"image": [{"bytes": b"\x89PNG", "path": None}], "caption": ["a cat"]},
        features=Features({"image": Image(), "caption": Value("string")}),
    ).save_to_disk(str(tmp_path / "pictures"))
    write_jsonl_dataset(tmp_path, "audio_clips", [{"audio_path": "a.wav", "transcript": "hi"}])
    write_jsonl_dataset(
        tmp_path,
        "no_derivs",
        [{"a": "x", "b": "y"}],
        {"license": "cc-by-nc-nd-4.0", "category": "other", "summary": "s"},
    )
    write_jsonl_dataset(tmp_path, "one_field", [{"id": 1, "text": "only text"}])
    write_qa(tmp_path)
    collection = collect_metadata([tmp_path])
    assert [m.name for m in collection.datasets] == ["trivia_qa_mini"]
    assert collection.skip_counts() == {"excluded_license": 1, "media_field": 2, "too_few_fields": 1}
    assert collect_metadata([tmp_path / "no_derivs"], excluded_licenses=["mit"]).datasets


def test_missing_path_is_one_clear_error(tmp_path):
    from engine.errors import InputError

    with pytest.raises(InputError, match="no such folder or file"):
        collect_metadata([tmp_path / "nope" / "x.jsonl"])
    assert collect_metadata(["someone/not-cached"]).skip_counts() == {"unavailable_offline": 1}


@pytest.mark.parametrize(
    ("name", "dropped"),
    [
        ("id", True),
        ("ID", True),
        ("idx", True),
        ("question_id", True),
        ("paperId", True),
        ("valid", False),
        ("hidden", False),
        ("side", False),
        ("idiom", False),
        ("video_ideas", False),
    ],
)
def test_only_exactly_id_like_fields_are_dropped(name, dropped):
    assert is_id_like(name) is dropped


def test_card_summary_section_and_fallback():
    assert card_summary("# T\n## Dataset Summary\nLine one\nline two.\n## Next\nno") == "Line one line two."
    assert card_summary("# T\n\nFirst paragraph here.\n\nSecond.") == "First paragraph here."
    assert card_summary("## Dataset Summary\n[More Information Needed]\n") == ""


# ---------------------------------------------------------------------------------- schema


def sentiment_meta(rows=None) -> DatasetMeta:
    rows = rows or [{"review": r, "sentiment": "positive" if s else "negative"} for r, s in REVIEWS]
    return DatasetMeta(
        name="reviews",
        source="x",
        config=None,
        summary="Movie reviews.",
        license="mit",
        task_categories=[],
        fields={"review": "text", "sentiment": "label"},
        label_names={"sentiment": ["negative", "positive"]},
        rows=rows,
    )


def test_schema_enums_are_exactly_the_dataset_fields():
    schema = task_schema(["review", "sentiment", "rating"])
    branches = schema["properties"]["tasks"]["items"]["anyOf"]
    assert [b["properties"]["output_field"]["enum"] for b in branches] == [
        ["review"],
        ["sentiment"],
        ["rating"],
    ]
    assert [b["properties"]["input_fields"]["items"]["enum"] for b in branches] == [
        ["sentiment", "rating"],
        ["review", "rating"],
        ["review", "sentiment"],
    ]
    assert all(b["additionalProperties"] is False for b in branches)
    assert list(branches[0]["properties"]) == ["input_fields", "output_field", "instruction"]
    assert schema["properties"]["tasks"]["maxItems"] == 3
    request = task_request(sentiment_meta(), "aware", DynosaurConfig())
    assert request.output_type == task_schema(["review", "sentiment"])
    assert request.sampling.temperature == 0.0 and request.sampling.max_tokens == 768
    assert "Movie reviews." in request.messages[1]["content"]
    assert (
        "Movie reviews."
        not in task_request(sentiment_meta(), "unaware", DynosaurConfig()).messages[1]["content"]
    )


@pytest.mark.parametrize(
    "bad_task",
    [
        {"instruction": "Guess the rating.", "input_fields": ["review"], "output_field": "rating"},
        {"instruction": "Give both.", "input_fields": ["review"], "output_field": ["sentiment", "review"]},
        {"instruction": "Use a ghost.", "input_fields": ["ghost"], "output_field": "sentiment"},
        {"instruction": "Copy it.", "input_fields": ["review", "sentiment"], "output_field": "sentiment"},
    ],
)
def test_nonexistent_multiple_or_overlapping_output_fields_are_invalid(bad_task):
    engine = ScriptedEngine(lambda r: {"tasks": [bad_task]})
    (result,) = engine.run([task_request(sentiment_meta(), "unaware", DynosaurConfig())])
    assert result.failure == "invalid"
    outcome = design_dataset(sentiment_meta(), {"unaware": result}, DynosaurConfig(settings=("unaware",)))
    assert outcome["requests"] == {"unaware": "failed_invalid"} and outcome["tasks"] == []


# ---------------------------------------------------------------------------------- filters


def proposal(instruction, setting="aware", inputs=("review",), output="sentiment", i=1):
    return {
        "task_id": f"reviews#{setting}-{i}",
        "task_name": "reviews",
        "setting": setting,
        "instruction": instruction,
        "input_fields": list(inputs),
        "output_field": output,
    }


def test_every_task_filter_counts_its_drop():
    good = "Decide whether the movie review is positive or negative."
    proposals = [
        proposal(good),
        proposal("   ", i=2),
        proposal("Sentiment?", i=3),
        proposal("Label label label label label label label label label label.", i=4),
        proposal(
            "Rewrite the review using the same sentiment.",
            inputs=("review", "sentiment"),
            output="review",
            i=5,
        ),
        proposal(good.upper(), i=6),
        proposal(good, setting="unaware"),
        proposal("Decide whether this movie review is positive or negative!", setting="unaware", i=2),
        proposal("Read the weather bulletin and say which sky condition it is.", setting="unaware", i=4),
        proposal("A warm, funny film with a great cast!", setting="unaware", i=5),
        proposal(
            "Write a short review that has the given sentiment.",
            setting="unaware",
            inputs=("sentiment",),
            output="review",
            i=3,
        ),
    ]
    kept, dropped = filter_tasks(
        proposals,
        demos=["Read the weather bulletin and say which sky condition it describes."],
        examples=[REVIEWS[0][0], "positive"],
    )
    assert [t["task_id"] for t in kept] == ["reviews#aware-1", "reviews#unaware-3"]
    assert {t["task_id"]: t["reason"] for t in dropped} == {
        "reviews#aware-2": "empty_instruction",
        "reviews#aware-3": "degenerate_instruction",
        "reviews#aware-4": "degenerate_instruction",
        "reviews#aware-5": "io_overlap",
        "reviews#aware-6": "duplicate_within_setting",
        "reviews#unaware-1": "duplicate_across_settings",
        "reviews#unaware-2": "near_duplicate",
        "reviews#unaware-4": "copied_demo",
        "reviews#unaware-5": "copied_example",
    }


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("Summarize the article in one sentence.", False),
        ("Translate", True),
        ("?? !! ## 12 34", True),
        ("Answer the question answer the question answer the question", True),
    ],
)
def test_degenerate_instructions(text, bad):
    assert is_degenerate(text) is bad


def test_instruction_copied_from_the_shown_rows_is_dropped():
    meta = sentiment_meta()
    engine = ScriptedEngine(
        lambda r: {
            "tasks": [{"instruction": REVIEWS[1][0], "input_fields": ["review"], "output_field": "sentiment"}]
        }
    )
    (result,) = engine.run([task_request(meta, "aware", DynosaurConfig())])
    outcome = design_dataset(meta, {"aware": result}, DynosaurConfig(settings=("aware",)))
    assert outcome["task_drops"] == {"dropped_copied_example": 1} and outcome["tasks"] == []


def test_task_without_usable_rows_is_dropped_as_no_instances():
    meta = sentiment_meta([{"review": "x", "sentiment": None}] * 3)
    engine = ScriptedEngine(
        lambda r: {
            "tasks": [
                {
                    "instruction": "Label the movie review.",
                    "input_fields": ["review"],
                    "output_field": "sentiment",
                }
            ]
        }
    )
    (result,) = engine.run([task_request(meta, "unaware", DynosaurConfig())])
    outcome = design_dataset(meta, {"unaware": result}, DynosaurConfig(settings=("unaware",)))
    assert outcome["task_drops"] == {"dropped_no_instances": 1}
    assert outcome["row_drops"] == {"dropped_empty_output": 3}


# ---------------------------------------------------------------------------------- instances


def test_input_rendering_single_multi_and_choices():
    row = {
        "question": "Which planet is red?",
        "choices": ["Venus", "Mars"],
        "answer": "Mars",
        "premise_text": "A dog runs.",
        "score": 2.5,
    }
    assert render_input(row, ["question"]) == "Which planet is red?"
    assert render_input(row, ["choices"]) == "(A) Venus (B) Mars"
    assert (
        render_input(row, ["question", "choices"])
        == 'The question is "Which planet is red?". The choices are: (A) Venus (B) Mars.'
    )
    assert (
        render_input(row, ["premise_text", "score"])
        == 'The premise text is "A dog runs.". The score is "2.5".'
    )
    assert render_input({"tags": ["a", "b"]}, ["tags"]) == '"a", "b"'
    assert render_input({"q": None}, ["q"]) is None


def test_non_scalar_output_rows_are_skipped_and_counted():
    meta = DatasetMeta(
        "qa",
        "x",
        None,
        "",
        "mit",
        [],
        {"question": "text", "answers": "list"},
        {},
        [{"question": "a?", "answers": ["x", "y"]}, {"question": "b?", "answers": "z"}],
    )
    task = {
        "task_id": "qa#aware-1",
        "instruction": "Answer.",
        "input_fields": ["question"],
        "output_field": "answers",
    }
    rows, counts = build_instances(task, meta)
    assert rows == [
        {"instruction": "Answer.", "input": "b?", "output": "z", "license": "mit", "task_name": "qa"}
    ]
    assert counts["dropped_output_not_scalar"] == 1


@pytest.mark.parametrize(
    ("outputs", "class_names", "labels"),
    [
        (["pos", "neg"] * 5, None, ["neg", "pos"]),  # sorted, deterministic
        (["b", "a", "c"] * 4, None, ["a", "b", "c"]),
        (["pos"] * 8 + ["neg"] * 2, None, None),  # 80% majority, 2 labels
        (["pos"] * 7 + ["neg"] * 3, None, ["neg", "pos"]),  # 70%: allowed
        (["a"] * 6 + ["b", "c", "d", "e"], None, None),  # 60% majority, >2 labels
        ([str(i) for i in range(11)] * 2, None, None),  # 11 labels
        (["a very long label text", "short"] * 5, None, None),  # > 15 chars
        (["Paris", "1969", "Mars", "honey"], None, None),  # unique short answers
        (["yes"] * 10, None, None),  # one label
        (
            ["entailment", "neutral", "entailment", "contradiction"],
            ["entailment", "neutral", "contradiction"],
            ["contradiction", "entailment", "neutral"],
        ),
    ],
)
def test_label_space_conditions(outputs, class_names, labels):
    assert label_space(outputs, class_names) == labels


def test_label_suffix_and_seeded_instance_sample():
    meta = sentiment_meta(
        [{"review": f"review {i}", "sentiment": ["negative", "positive"][i % 2]} for i in range(50)]
    )
    task = {
        "task_id": "reviews#aware-1",
        "instruction": "Classify the review.",
        "input_fields": ["review"],
        "output_field": "sentiment",
    }
    rows, counts = build_instances(task, meta, max_instances=10, seed=3)
    assert len(rows) == 10 and counts["sampled_out"] == 40
    assert rows[0]["instruction"] == "Classify the review. Answers must be one of negative, positive."
    again, _ = build_instances(task, meta, max_instances=10, seed=3)
    other, _ = build_instances(task, meta, max_instances=10, seed=4)
    assert again == rows and other != rows


# ---------------------------------------------------------------------------------- the run


def test_run_writes_outputs_report_and_loadable_jsonl(collection_dir, tmp_path):
    engine = ScriptedEngine(designer)
    run = RunDir(tmp_path / "run")
    report = run_dynosaur(engine, collect_metadata([collection_dir]), run, DynosaurConfig())
    assert len(engine.batches) == 1 and len(engine.batches[0]) == 4  # 2 datasets x 2 settings
    assert report["tasks"]["proposed"] == {"aware": 4, "unaware": 2}
    assert report["tasks"]["total"] == sum(report["tasks"]["kept"].values()) > 0
    assert report["datasets"] == {"seen": 2, "usable": 2, "skipped": {}, "skipped_list": [], "with_tasks": 2}
    import datasets

    loaded = datasets.load_dataset("json", data_files=str(run / "instances.jsonl"), split="train")
    assert loaded.column_names == ["instruction", "input", "output", "license", "task_name"]
    assert len(loaded) == report["instances"]["total"]
    sentiment = [
        r
        for r in loaded
        if r["task_name"] == "movie_reviews" and r["instruction"].startswith("Read the review")
    ]
    assert sentiment[0]["instruction"].endswith("Answers must be one of negative, positive.")
    tasks = [json.loads(line) for line in open(run / "tasks.jsonl", encoding="utf-8")]
    assert {t["setting"] for t in tasks} == {"aware", "unaware"} and tasks[0]["examples"]


def test_growth_processes_only_new_datasets(collection_dir, tmp_path):
    run = RunDir(tmp_path / "run")
    first = run_dynosaur(ScriptedEngine(designer), collect_metadata([collection_dir]), run)
    write_jsonl_dataset(
        collection_dir,
        "nli_pairs",
        [
            {"premise": "A man plays a guitar.", "hypothesis": "Someone makes music.", "label": "entailment"},
            {"premise": "A cat sleeps.", "hypothesis": "The cat runs.", "label": "contradiction"},
        ],
        {"license": "apache-2.0", "category": "text-classification", "summary": "Sentence pairs."},
    )
    engine = ScriptedEngine(designer)
    second = run_dynosaur(engine, collect_metadata([collection_dir]), run)
    (batch,) = engine.batches
    assert len(batch) == 2 and all('"name": "nli_pairs"' in r.messages[1]["content"] for r in batch)
    assert second["added_this_run"]["datasets"] == ["nli_pairs"]
    assert second["tasks"]["total"] == first["tasks"]["total"] + second["added_this_run"]["tasks"]
    assert len(second["history"]) == 2
    engine = ScriptedEngine(designer)
    third = run_dynosaur(engine, collect_metadata([collection_dir]), run)
    assert engine.batches == [] and third["added_this_run"]["datasets"] == []


def test_changed_config_reprocesses(collection_dir, tmp_path):
    run = RunDir(tmp_path / "run")
    run_dynosaur(ScriptedEngine(designer), collect_metadata([collection_dir]), run)
    engine = ScriptedEngine(designer)
    run_dynosaur(engine, collect_metadata([collection_dir]), run, DynosaurConfig(max_instances=2))
    assert len(engine.batches[0]) == 4


def test_dataset_without_summary_skips_the_aware_setting(tmp_path):
    meta = build_meta(
        name="plain",
        source="x",
        config=None,
        card={},
        features=None,
        splits={"train": [{"a": "x", "b": "y"}, {"a": "z", "b": "w"}]},
    )
    engine = ScriptedEngine(designer)
    from generators.dynosaur.metadata import Collection

    report = run_dynosaur(engine, Collection([meta]), RunDir(tmp_path / "run"))
    assert len(engine.batches[0]) == 1
    assert report["requests"] == {"ok": 1, "skipped_no_summary": 1}


# ---------------------------------------------------------------------------------- real engine


@pytest.mark.engine
def test_cli_end_to_end_on_the_real_engine(collection_dir, tmp_path, cli_engine, run_cli):
    out = tmp_path / "dyno"
    # The tiny engine serves 1024 tokens: no demos, one short task per reply.
    small = ["--demos", "0", "--max-tasks", "1", "--max-tokens", "160", "--max-instruction-chars", "40"]
    first = run_cli(
        [
            "dynosaur",
            "--datasets",
            str(collection_dir / "movie_reviews"),
            str(collection_dir / "trivia_qa_mini"),
            "--out",
            str(out),
            *small,
        ]
    )
    assert first.code == 0 and "tasks" in first.last_line
    report = json.loads((out / "report.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == "dynosaur" and report["datasets"]["usable"] == 2
    # Random weights may run a string into the token limit; the others parse against the schema.
    assert report["requests"].get("ok", 0) >= 2
    assert sum(report["tasks"]["proposed"].values()) == report["requests"]["ok"]
    assert cli_engine[0].stats.requests == 4
    fields = {
        "movie_reviews": {"review", "sentiment", "valid_votes"},
        "trivia_qa_mini": {"question", "choices", "answer"},
    }
    outcomes = [json.loads(p.read_text()) for p in (out / "datasets").glob("*.json")]
    proposed = [t for o in outcomes for t in o["tasks"] + o["dropped_tasks"]]
    # Gibberish model, grammar-constrained: every field it names is a real field of its dataset.
    for task in proposed:
        assert task["output_field"] in fields[task["task_name"]]
        assert set(task["input_fields"]) <= fields[task["task_name"]]
    (out / ".done").rename(out / ".done-old")  # markers gone: the request cache answers all
    (out / ".done").mkdir()
    assert run_cli(["dynosaur", "--datasets", str(collection_dir), "--out", str(out), *small]).code == 0
    assert cli_engine[1].stats.model_calls == 0 and cli_engine[1].stats.cache_hits == 4
