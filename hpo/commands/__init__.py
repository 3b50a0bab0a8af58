"""The `hpo` command line. Thin: one module per command group parses its options, calls one core function
and prints. Errors from the core (hpo.errors.HpoError) become one `error:` line and exit code 2
(``hpo.commands.common``), usage errors the same kind of line (``hpo.commands.entry``); every exit code is in
``hpo.commands.exit_codes``.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from hpo.commands import entry, estimate, inspect, tune

app = typer.Typer(
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Optuna hyperparameter search for transformer classifiers on one GPU, without CUDA OOM.",
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(entry.version_text())
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version of hpo (and of torch, transformers, optuna, mlflow) and exit.",
        ),
    ] = False,
) -> None:
    """Optuna hyperparameter search for transformer classifiers on one GPU, without CUDA OOM."""


app.command()(tune.tune)
app.command()(tune.worker)
app.command("sync-mlflow")(tune.sync_mlflow)
app.command()(inspect.studies)
app.command()(inspect.trials)
app.command()(inspect.best)
app.command()(inspect.oom)
app.command()(inspect.report)
app.command()(estimate.estimate)


def main() -> None:
    """Console-script entry point: every error is one `error:` line (hpo.commands.entry)."""
    sys.exit(entry.run(app))
