"""The `hpo` console script around the Typer app: one error style for every usage error (Click's too),
switches shown without a value type in --help, and the text of `hpo --version`.

Typer prints Click's usage errors as a boxed panel; `hpo` prints every error the same way instead, as one
``error: <problem> (see `hpo <command> --help`)`` line on stderr with exit code 2, like the HpoError lines of
``hpo.commands.common``.
"""

from __future__ import annotations

import contextlib
import itertools
import platform
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import typer

from hpo.commands.exit_codes import BAD_INPUT
from hpo.errors import HpoError

BOOL_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "1", "0"})
VERSIONED = ("torch", "transformers", "optuna", "mlflow")  # what a bug report needs besides hpo's own


def _click_class(name: str) -> type[Exception]:
    """Click's exception ``name`` wherever this Typer keeps Click (newer Typers vendor it as typer._click)."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


USAGE_ERROR = _click_class("UsageError")
CLICK_ERROR = _click_class("ClickException")


def version_text() -> str:
    """``hpo 0.1.0 (Python 3.11.9; torch 2.13.0, ...)`` from the installed distributions (imports none)."""

    def of(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    others = ", ".join(f"{name} {of(name)}" for name in VERSIONED)
    return f"hpo {of('hpo')} (Python {platform.python_version()}; {others})"


def switches_take_no_value(command: Any) -> None:
    """Show switches (``--json``, ``--grad-checkpointing``) without Typer's ``<bool>`` value type: they take
    no value, and --help must not say otherwise."""
    params = list(getattr(command, "params", []))
    with contextlib.suppress(Exception):  # --help: Click makes it on first use and keeps it (Click >= 8.2)
        params.append(command.get_help_option(typer.Context(command)))
    for param in params:
        if getattr(param, "is_flag", False) and not getattr(param, "count", False):
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        switches_take_no_value(sub)


def _switch_given_a_value(exc: Any, argv: Sequence[str]) -> str | None:
    """``--grad-checkpointing true``: the sentence that says how to write it, or None for other errors."""
    ctx = getattr(exc, "ctx", None)
    if ctx is None or "unexpected extra argument" not in exc.format_message():
        return None
    for before, word in itertools.pairwise(argv):
        if word.lower() not in BOOL_WORDS:
            continue
        for param in ctx.command.params:
            if getattr(param, "is_flag", False) and before in param.opts:
                off = f", or {param.secondary_opts[0]}" if param.secondary_opts else ""
                return (
                    f"{before} is a switch and takes no value: write {before} alone to turn it on, "
                    f"leave it out to keep it off{off}"
                )
    return None


def usage_error_line(exc: Any, argv: Sequence[str]) -> str:
    """One ``error:`` line for a Click usage error: its message, lower-cased and on one line, then where to
    read the command's options."""
    message = " ".join(exc.format_message().split()).replace("Value error, ", "")  # Typer's pydantic prefix
    text = _switch_given_a_value(exc, argv) or message.rstrip(".")
    if text[:1].isupper() and not text[1:2].isupper():
        text = text[0].lower() + text[1:]
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "hpo"
    return f"error: {text} (see `{where} --help`)"


def run(app: typer.Typer, argv: Sequence[str] | None = None) -> int:
    """Run ``app`` on ``argv`` (default: the process's arguments); the exit code. Every error is one line."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = typer.main.get_command(app)
    switches_take_no_value(command)
    try:
        code = command.main(args=args, prog_name="hpo", standalone_mode=False)
    except USAGE_ERROR as exc:
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:  # bare `hpo`: the help, once
            text = exc.format_message()  # type: ignore[attr-defined]  # rich help printed itself already
            if text.strip():
                typer.echo(text)
            return BAD_INPUT
        typer.echo(usage_error_line(exc, args), err=True)
        return int(getattr(exc, "exit_code", BAD_INPUT))
    except CLICK_ERROR as exc:  # e.g. a file option that cannot be opened
        typer.echo(f"error: {' '.join(exc.format_message().split())}", err=True)  # type: ignore[attr-defined]
        return int(getattr(exc, "exit_code", 1))
    except HpoError as exc:  # commands already handle it (hpo.commands.common); a last guard
        typer.echo(f"error: {exc}", err=True)
        return BAD_INPUT
    return code if isinstance(code, int) else 0
