"""The `instructforge` command: every command registered here, and one place that turns errors into one line.

instructforge generate --input prompts.jsonl --output out.jsonl --schema schema.json
instructforge --help
"""

from __future__ import annotations

import os
import sys

import typer

from engine.errors import ConfigError, InputError, InstructforgeError, ModelError

# Offline by design: weights and data come from local paths or packages, never from a hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

app = typer.Typer(
    name="instructforge",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help=(
        "Instruction-tuning data on your own hardware: Self-Instruct, Alpaca, Dynosaur, Explore-Instruct\n"
        "and InsTag on a local vLLM engine with JSON-schema-constrained outputs.\n\n"
        "First run (downloads nothing: the default model ships in a Python package):\n\n"
        "    instructforge generate --input examples/prompts.jsonl --output out.jsonl\n\n"
        "Set INSTRUCTFORGE_DEBUG=1 or pass --debug for full tracebacks."
    ),
)


@app.callback()
def _root() -> None:
    """Keeps `instructforge` a group of commands even while only one is registered."""


# exit 2: the user can fix the input or the flags; exit 1: the run itself failed.
EXIT_CODES: dict[type[Exception], int] = {InputError: 2, ConfigError: 2, ModelError: 1, InstructforgeError: 1}


# command name -> module; each module defines `main` (the command) and `EXAMPLES` (shown under --help).
# Command modules import heavy libraries inside `main`, so `instructforge --help` stays fast.
COMMANDS: dict[str, str] = {
    "generate": "instructforge.commands.generate",
    "batch": "instructforge.commands.batch",
    "self-instruct": "instructforge.commands.self_instruct",
    "alpaca": "instructforge.commands.alpaca",
    "explore": "instructforge.commands.explore",
    "diversity": "instructforge.commands.diversity",
    "dynosaur": "instructforge.commands.dynosaur",
    "replay": "instructforge.commands.replay",
    "tag": "instructforge.commands.tag",
    "normalize": "instructforge.commands.normalize",
    "tag-report": "instructforge.commands.tag_report",
    "select": "instructforge.commands.select",
    "tag-eval": "instructforge.commands.tag_eval",
    "dedup": "instructforge.commands.dedup",
    "provision": "instructforge.commands.provision",
    "cluster": "instructforge.commands.cluster",
    "report": "instructforge.commands.report",
}


def _register() -> None:
    import importlib

    for name, module_path in COMMANDS.items():
        module = importlib.import_module(module_path)
        app.command(name=name, epilog=module.EXAMPLES)(module.main)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; known errors become one line on stderr (exit 2 bad input, 1 failed run)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("INSTRUCTFORGE_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    _register()
    try:
        code = app(args=argv, standalone_mode=False)  # Ctrl-C comes back as typer's exit code 130
    except typer.Exit as e:
        code = e.exit_code
    except Exception as e:  # noqa: BLE001 - the one top-level handler
        if debug:
            raise
        if isinstance(e, typer.Abort):
            code = 130
        elif isinstance(e, typer.TyperException) and hasattr(e, "format_message"):  # a flag's fault: exit 2
            print(f"error: {e.format_message()} (see --help)", file=sys.stderr)
            sys.exit(getattr(e, "exit_code", 2))
        else:
            code = next((c for t, c in EXIT_CODES.items() if isinstance(e, t)), None)
            message = str(e) if code is not None else _unexpected(e)
            print(f"error: {message}", file=sys.stderr)
            sys.exit(code or 1)
    if isinstance(code, int) and code:
        if code == 130:
            print(
                "interrupted: finished requests are cached and finished steps saved; rerun the same "
                "command to resume",
                file=sys.stderr,
            )
        sys.exit(code)


def _unexpected(error: BaseException) -> str:
    """One line for a bug: its type and message, and the log file that keeps its traceback."""
    import time
    import traceback

    from engine.models import cache_root

    text = "".join(traceback.format_exception(error))
    try:
        log = cache_root() / "logs" / f"error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(text, encoding="utf-8")
        where = f"traceback in {log}"
    except OSError:
        where = "the traceback could not be saved"
    first = str(error).splitlines()[0] if str(error) else ""
    return f"unexpected {type(error).__name__}: {first} ({where}; --debug shows it here)"
