"""The one place errors become one line: Ctrl-C is exit 130 and says how to resume; a bug is one line that
names the log file holding its traceback."""

from __future__ import annotations

import pytest


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "x"}\n')
    return path


def test_ctrl_c_is_exit_130_with_one_line(monkeypatch, prompts, tmp_path, run_cli):
    import instructforge.commands.generate as generate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(generate, "read_requests", interrupted)
    code, out, err = run_cli(["generate", "-i", str(prompts), "-o", str(tmp_path / "o.jsonl")])
    assert code == 130 and out == ""
    assert err.strip().splitlines() == [
        "interrupted: finished requests are cached and finished steps saved; rerun the same command to resume"
    ]


def test_an_unexpected_error_is_one_line_naming_its_log(monkeypatch, prompts, tmp_path, run_cli):
    import instructforge.commands.generate as generate

    def bug(*args, **kwargs):
        raise ZeroDivisionError("division by zero\nand more")

    monkeypatch.setattr(generate, "read_requests", bug)
    monkeypatch.setenv("INSTRUCTFORGE_CACHE_DIR", str(tmp_path / "cache"))
    code, _, err = run_cli(["generate", "-i", str(prompts), "-o", str(tmp_path / "o.jsonl")])
    (line,) = err.strip().splitlines()
    assert code == 1 and line.startswith(
        "error: unexpected ZeroDivisionError: division by zero (traceback in "
    )
    (log,) = (tmp_path / "cache" / "logs").iterdir()
    assert str(log) in line and "Traceback (most recent call last)" in log.read_text()
    with pytest.raises(ZeroDivisionError):
        run_cli(["generate", "-i", str(prompts), "-o", str(tmp_path / "o.jsonl"), "--debug"])


def test_a_value_given_is_honoured_or_refused_never_replaced(prompts, tmp_path, run_cli):
    code, _, err = run_cli(
        ["generate", "-i", str(prompts), "-o", str(tmp_path / "o.jsonl"), "--max-tokens", "0"]
    )
    assert code == 2 and "--max-tokens" in err and not (tmp_path / "o.jsonl").exists()
