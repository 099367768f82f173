"""Every run is a dataset to look at and to publish (issue 19): a Hugging Face dataset card that
`datasets.load_dataset(RUN_DIR)` and `DatasetCard.load` read, with counts equal to the run's own report,
and a self-contained report.html that real headless Chromium opens with no console error, no request
beyond the page's own file and inline data, and a screenshot that is not blank.

The runs are the golden runs (tests/test_golden.py) of each method on the tiny model, replayed from their
recorded request cache (no model call while the recording matches the code), plus Alpaca through the
commands' shared runner, normalize and select on the tag run, and a Dynosaur run with rows: the tiny
model's greedy task designs are never real instructions (every one is dropped as degenerate), so rows
come from the scripted designer of tests/test_dynosaur.py. Set INSTRUCTFORGE_SCREENSHOTS=DIR to keep the
screenshots.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.browser import Browser, chromium_path, is_blank
from tests.test_golden import CASES, GOLDEN, load_entries, write_jsonl
from tests.tiny_runs import ALPACA_SEEDS, alpaca_config

pytestmark = pytest.mark.engine


@dataclass
class Published:
    """One published run: where its card and page are, and what the command printed."""

    command: str
    target: Path
    """The run directory, or the output file of generate / select."""
    data: str
    out: str = ""
    err: str = ""

    @property
    def folder(self) -> Path:
        return self.target if self.target.is_dir() else self.target.parent

    @property
    def page(self) -> Path:
        return self.target / "report.html" if self.target.is_dir() else Path(f"{self.target}.report.html")

    def report(self) -> dict[str, Any]:
        if self.target.is_dir():
            return json.loads((self.target / "report.json").read_text(encoding="utf-8"))
        if self.command == "select":
            return json.loads(Path(f"{self.target}.report.json").read_text(encoding="utf-8"))
        return json.loads(Path(f"{self.target}.manifest.json").read_text(encoding="utf-8"))["counts"]


def cli(args: list[str]) -> tuple[str, str]:
    """Run one command in this process; (stdout, stderr); a failure fails the test with its output."""
    from instructforge.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
        except SystemExit as e:
            if e.code:
                pytest.fail(f"instructforge {' '.join(args)} exited {e.code}: {err.getvalue()[-2000:]}")
    return out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def published(tiny_engine, tmp_path_factory) -> dict[str, Published]:
    from engine.run.steps import FINAL_FILE
    from generators.alpaca import run_alpaca
    from instructforge.engine_args import EngineArgs
    from instructforge.generator_run import run_generator_command
    from tests.fakes import ScriptedEngine
    from tests.test_dynosaur import designer, save_sentiment, write_qa

    root = tmp_path_factory.mktemp("published")
    cache = root / "cache"
    for case in ("self-instruct", "alpaca", "dynosaur", "explore", "tag", "generate"):
        lines = (GOLDEN / case / "cache.jsonl").read_text(encoding="utf-8").splitlines()
        load_entries(cache, [json.loads(line) for line in lines])

    def build(self, progress_desc: str = "generating"):
        return tiny_engine.fork(cache_dir=cache, progress_desc=progress_desc)

    runs: dict[str, Published] = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(EngineArgs, "build", build)
        data = {
            "self-instruct": "data.jsonl",
            "dynosaur": "instances.jsonl",
            "explore": "explore_instruct.jsonl",
        }
        data |= {"tag": "tags.jsonl", "generate": "out.jsonl"}
        for case, name in data.items():
            work = root / case
            work.mkdir()
            export = ["--format", "openai"] if case == "self-instruct" else []  # a second config on the card
            out, err = cli([*CASES[case](work), *export])
            target = work / "run" / "out.jsonl" if case == "generate" else work / "run"
            runs["dynosaur-tiny" if case == "dynosaur" else case] = Published(case, target, name, out, err)

        work = root / "alpaca"  # the Alpaca command's budget exceeds the tiny context: its runner, as the CLI
        seeds = write_jsonl(
            work / "seeds.jsonl", [{"instruction": t, "input": "", "output": "ok"} for t in ALPACA_SEEDS]
        )
        run_generator_command(
            "alpaca",
            EngineArgs(),
            work / "run",
            seeds,
            alpaca_config(),
            run_alpaca,
            outputs=["machine_generated_instructions.jsonl", FINAL_FILE, "report.json"],
            counts=lambda r: {"instructions": r["instructions"], "rows": r["rows"]},
        )
        runs["alpaca"] = Published("alpaca", work / "run", "data.jsonl")

        tags = runs["tag"].target
        for name, flags in {"normalize-alpha20": [], "normalize": ["--min-share", "0.01"]}.items():
            out, err = cli(
                [
                    "normalize",
                    "--input",
                    str(tags),
                    "--out",
                    str(root / name),
                    "--no-semantic",
                    "--no-association",
                    *flags,
                ]
            )
            runs[name] = Published("normalize", root / name, "tags.jsonl", out, err)
        selected = root / "select" / "selected.jsonl"
        selected.parent.mkdir()
        out, err = cli(
            [
                "select",
                "--input",
                str(root / "normalize"),
                "--n",
                "2",
                "--output",
                str(selected),
            ]
        )
        runs["select"] = Published("select", selected, "selected.jsonl", out, err)

        patch.setattr(
            EngineArgs, "build", lambda self, desc="": contextlib.nullcontext(ScriptedEngine(designer))
        )
        collection = root / "collection"
        collection.mkdir()
        datasets = [str(save_sentiment(collection)), str(write_qa(collection))]
        out, err = cli(["dynosaur", "--datasets", *datasets, "--out", str(root / "dynosaur")])
        runs["dynosaur"] = Published("dynosaur", root / "dynosaur", "instances.jsonl", out, err)
    return runs


def reported_rows(run: Published) -> int:
    """Rows of the run's main output as its own report.json (or manifest) counts them."""
    report = run.report()
    return {
        "self-instruct": lambda: report["rows"],
        "alpaca": lambda: report["rows"],
        "dynosaur": lambda: report["instances"]["total"],
        "explore": lambda: report["sample"]["rows"],
        "tag": lambda: report["outputs"]["rows"],
        "normalize": lambda: report["rows"],
        "select": lambda: report["selected"],
        "generate": lambda: report["rows"],
    }[run.command]()


def dropped(counters: dict[str, Any], prefix: str = "dropped_") -> dict[str, int]:
    return {k.removeprefix(prefix): v for k, v in counters.items() if k.startswith(prefix) and v}


def expected_counts(run: Published) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(stage, reason) -> (in, dropped, kept), read straight from the run's report (reason "-": none)."""
    report, out = run.report(), {}

    def stage(name: str, candidates: int, drops: dict[str, int], kept: int) -> None:
        for reason, count in (drops or {"-": 0}).items():
            out[(name, reason)] = (candidates, count, kept)

    if run.command == "self-instruct":
        boot, inst = report["bootstrap"], report["instances"]
        stage("bootstrap: filters", boot["candidates"], dropped(boot), boot["accepted"])
        drops = dropped(inst)
        stage("instances: rules", report["rows"] + sum(drops.values()), drops, report["rows"])
    elif run.command == "alpaca":
        grown = report["generate"]
        stage("generate: filters", grown["candidates"], dropped(grown), grown["accepted"])
    elif run.command == "dynosaur":
        tasks = report["tasks"]
        stage("task filters", sum(tasks["proposed"].values()), dropped(tasks), tasks["total"])
    elif run.command == "explore":
        for level in report["extend"]:
            counts = level["counts"]
            stage(
                f"extend depth {level['depth']}: subtasks",
                counts.get("proposed", 0),
                dropped(counts, "rejected_"),
                counts.get("added", 0),
            )
        enrich = report["enrich"]["counts"]
        stage("enrich: examples", enrich.get("candidates", 0), dropped(enrich), enrich.get("added", 0))
    elif run.command == "tag":
        outputs = report["outputs"]
        stage("tagging", report["plan"]["queries"], dropped(outputs, "failed_"), outputs.get("tagged", 0))
    elif run.command == "normalize":
        for before, step in zip(report["steps"], report["steps"][1:]):
            gone = before["tags"] - step["tags"]
            reason = "below_min_frequency" if step["step"] == "frequency_filter" else "into_another_tag"
            stage(step["step"], before["tags"], {reason: gone} if gone else {}, step["tags"])
    elif run.command == "select":
        left = report["pool"] - report["selected"]
        stage(
            "complexity-first diverse sampling",
            report["pool"],
            {"not_selected": left} if left else {},
            report["selected"],
        )
    elif run.command == "generate":
        rows = [json.loads(line) for line in run.target.read_text(encoding="utf-8").splitlines()]
        failures: dict[str, int] = {}
        for row in rows:
            if row.get("failure"):
                failures[row["failure"]] = failures.get(row["failure"], 0) + 1
        stage("answers", len(rows), failures, len(rows) - sum(failures.values()))
    return out


def card_counts(text: str) -> dict[tuple[str, str], tuple[int, int, int]]:
    """The card's counts table: | stage | unit | in | reason | dropped | kept |."""
    section = text.split("## Counts", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    number = lambda cell: int(cell.strip().replace(",", ""))  # noqa: E731
    return {(r[0].strip(), r[3].strip()): (number(r[2]), number(r[4]), number(r[5])) for r in rows[1:]}


PUBLISHED = ["self-instruct", "alpaca", "dynosaur", "explore", "tag", "normalize", "select", "generate"]
KEY_FIELD = {"tag": "query", "normalize": "query", "select": "id", "generate": "text"}


@pytest.mark.parametrize("case", PUBLISHED)
def test_card_loads_the_rows_and_counts_what_the_report_counts(published, case, tmp_path):
    import datasets
    from huggingface_hub import DatasetCard

    run = published[case]
    card = DatasetCard.load(run.folder / "README.md")
    meta = card.data.to_dict()
    assert {"synthetic", "instructforge"} <= set(meta["tags"]) and len(meta["tags"]) >= 3
    assert meta["task_categories"] and meta["language"] == ["en"] and meta["size_categories"] == ["n<1K"]
    assert meta["configs"][0]["data_files"] == [{"split": "train", "path": run.data}]
    assert (
        run.folder / ("run_config.yaml" if run.target.is_dir() else f"{run.target.name}.config.yaml")
    ).is_file()

    rows = [json.loads(line) for line in (run.folder / run.data).read_text(encoding="utf-8").splitlines()]
    assert reported_rows(run) == len(rows) > 0
    train = datasets.load_dataset(str(run.folder), cache_dir=str(tmp_path / "hf"))["train"]
    key = KEY_FIELD.get(case, "instruction")
    assert train.num_rows == len(rows) and train[key] == [row[key] for row in rows]
    if case == "self-instruct":  # the --format openai export is the card's `openai` config
        chats = datasets.load_dataset(str(run.folder), "openai", cache_dir=str(tmp_path / "hf"))["train"]
        assert chats.num_rows == len(rows) and chats[0]["messages"][0]["role"] == "user"

    text = (run.folder / "README.md").read_text(encoding="utf-8")
    table = card_counts(text)
    expected = expected_counts(run)
    assert expected and {k: table.get(k) for k in expected} == expected
    manifest = json.loads(
        (
            run.target / "manifest.json" if run.target.is_dir() else Path(f"{run.target}.manifest.json")
        ).read_text()
    )
    if "model" in manifest:  # the model's identity with its weights fingerprint, and the seed
        assert manifest["model"]["identity"].replace("|", "\\|") in text  # a table cell escapes |
    for package, version in manifest["versions"].items():
        assert f"| {package} | {version} |" in text


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    executable = chromium_path()
    if executable is None:
        pytest.skip(
            "chromium is not installed: `make test` installs Debian's `chromium` when run as root "
            "(apt-get install chromium); install it to open the report pages"
        )
    with Browser(executable, tmp_path_factory.mktemp("chromium") / "profile") as running:
        yield running


def check_page(browser, page: Path, name: str) -> str:
    """Open `page` in Chromium: no console error, no request beyond file: and data:, not blank."""
    html = page.read_text(encoding="utf-8")
    assert "<script" not in html.lower() and "@import" not in html and "url(" not in html
    load = browser.open(page)
    assert load.console_errors == []
    assert load.requests and load.outside_requests == [], load.requests
    assert not is_blank(load.screenshot)
    shots = os.environ.get("INSTRUCTFORGE_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        (Path(shots) / f"{name}.png").write_bytes(load.screenshot)
    return html


@pytest.mark.parametrize("case", [*PUBLISHED, "dynosaur-tiny", "normalize-alpha20"])
def test_report_page_opens_offline_in_chromium(published, browser, case):
    run = published[case]
    html = check_page(browser, run.page, case)
    assert html.count('src="data:image/png;base64,') >= (
        1 if case in ("normalize-alpha20", "dynosaur-tiny") else 2
    )
    assert "Funnel" in html and "Sample of kept rows" in html and "Engine" in html
    if case == "explore":
        assert "Tree" in html and "Email writing" in html
    if case in ("self-instruct", "alpaca"):
        assert "ROUGE-L to the most similar seed instruction" in html


def test_the_browser_check_fails_a_page_that_fetches_logs_an_error_or_is_blank(browser, tmp_path):
    """The three checks above can fail: a page asking the network for an image and logging an error, and
    an empty page, are caught."""
    bad = tmp_path / "bad.html"
    bad.write_text('<img src="http://example.com/x.png"><script>console.error("boom")</script><h1>x</h1>')
    load = browser.open(bad)
    assert load.outside_requests == ["http://example.com/x.png"]
    assert "boom" in load.console_errors
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    assert is_blank(browser.open(blank).screenshot)


def test_degenerate_runs_say_so_in_one_line_and_on_the_page(published):
    alpha = published["normalize-alpha20"]
    notes = [line for line in alpha.err.splitlines() if line.startswith("note:")]
    assert (
        len(notes) == 1 and "frequency_filter: 2 of 2 tags removed" in notes[0] and "--min-share" in notes[0]
    )
    assert '<div class="note">' in alpha.page.read_text() and "--min-share" in alpha.page.read_text()
    assert "**Note:**" in (alpha.target / "README.md").read_text() and "--min-share" in notes[0]

    import warnings

    with warnings.catch_warnings(record=True) as caught:  # tag-report of no tags: a note, no empty plots
        warnings.simplefilter("always")
        out, err = cli(["tag-report", "--input", str(alpha.target), "--out", str(alpha.target.parent / "tr")])
    assert [
        str(w.message) for w in caught if issubclass(w.category, UserWarning)
    ] == [] and "and 0 plots" in out
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "--min-share" in notes[0]

    tiny = published["dynosaur-tiny"]
    notes = [line for line in tiny.err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and notes[0].startswith("note: empty result (instances.jsonl has no rows)")
    assert "degenerate_instruction" in notes[0] and "--model" in notes[0]
    assert "empty result" in tiny.page.read_text()
    assert not any(line.startswith("note:") for line in published["normalize"].err.splitlines())


def test_report_command_rewrites_a_page_and_puts_runs_side_by_side(published, browser, tmp_path):
    si, tag = published["self-instruct"], published["tag"]
    si.page.unlink()
    out, _ = cli(["report", str(si.target)])
    assert si.page.is_file() and out.strip().splitlines()[-1].startswith(f"wrote {si.page}")
    both = tmp_path / "both.html"
    out, _ = cli(
        ["report", str(si.target), str(tag.target), str(published["generate"].target), "-o", str(both)]
    )
    html = check_page(browser, both, "side-by-side")
    assert "--runs:3" in html and html.count('<section class="run">') == 3


def test_report_command_bad_input_is_one_line(published, tmp_path, run_cli):
    missing = run_cli(["report", str(tmp_path / "nowhere")])
    assert missing.code == 2 and missing.err.count("\n") == 1 and "no such run directory" in missing.err
    (tmp_path / "empty").mkdir()
    empty = run_cli(["report", str(tmp_path / "empty")])
    assert empty.code == 2 and "no manifest.json here" in empty.err and "Traceback" not in empty.err


def test_a_card_never_replaces_someone_elses_readme(tmp_path):
    from engine.run.publish import places

    output = tmp_path / "out.jsonl"
    assert places(output, "out.jsonl").card == tmp_path / "README.md"
    (tmp_path / "README.md").write_text("# my notes\n")
    assert places(output, "out.jsonl").card == tmp_path / "out.jsonl.README.md"
    (tmp_path / "README.md").write_text(
        "---\ntags:\n- instructforge\nconfigs:\n- config_name: default\n  data_files:\n"
        "  - split: train\n    path: out.jsonl\n---\n"
    )
    assert places(output, "out.jsonl").card == tmp_path / "README.md"  # its own card: updated
    assert places(tmp_path / "other.jsonl", "other.jsonl").card == tmp_path / "other.jsonl.README.md"
