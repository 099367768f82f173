"""Shared fixtures: the real data in ../shared/data and an isolated cache/home per test session."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("INSTRUCTFORGE_NO_PROGRESS", "1")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"../shared/data not found at {SHARED_DATA}: tests need the shared data beside the repo")
    return SHARED_DATA


# Each vLLM engine in a test takes ~1 GiB of KV cache at most; tests may run beside other work.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


class CliRun(NamedTuple):
    """What one `instructforge` command did: its exit code and what it printed."""

    code: int
    out: str
    err: str

    @property
    def last_line(self) -> str:
        """The command's one-line summary (the last line on stdout)."""
        lines = self.out.strip().splitlines()
        return lines[-1] if lines else ""


@pytest.fixture
def run_cli(capsys):
    """Run `instructforge ARGS` in this process; returns a CliRun (the output is read from capsys)."""

    def run(args: list[str]) -> CliRun:
        from instructforge.cli import main

        capsys.readouterr()  # what the test printed before is not the command's
        try:
            main(args)
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        out, err = capsys.readouterr()
        return CliRun(code, out, err)

    return run


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A random-weight tiny Llama with a ChatML tokenizer, built once per session (see tiny_model.py)."""
    from tests.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_engine(tiny_model, tmp_path_factory):
    """The real vLLM engine on the tiny model, started once per session (started on first use)."""
    from engine.engine import Engine

    engine = Engine(str(tiny_model), cache_dir=tmp_path_factory.mktemp("engine-cache"), max_model_len=1024)
    yield engine
    engine.close()


@pytest.fixture
def engine(tiny_engine, tmp_path):
    """The session's tiny engine with a fresh, empty request cache of this test's own."""
    forked = tiny_engine.fork(cache_dir=tmp_path / "cache")
    yield forked
    forked.close()


@pytest.fixture
def cli_engine(tiny_engine, tmp_path, monkeypatch):
    """Make CLI commands run on the session's tiny engine (fresh cache per test) instead of starting
    their own model; returns the list of engines the commands built, to inspect their stats."""
    from instructforge.engine_args import EngineArgs

    built = []

    def build(self, progress_desc: str = "generating"):
        cache = self.cache_dir or tmp_path / "cli-cache"
        forked = tiny_engine.fork(cache_dir=cache, use_cache=not self.no_cache, progress_desc=progress_desc)
        built.append(forked)
        return forked

    monkeypatch.setattr(EngineArgs, "build", build)
    return built
