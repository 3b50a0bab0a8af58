"""The `hpo` command line. Thin: one module per command group parses its options, calls one core function
and prints. Errors from the core (hpo.errors.HpoError) become one `error:` line and exit code 2 here and
nowhere else; every exit code is in ``hpo.commands.exit_codes``.
"""

from __future__ import annotations

import sys

import typer

from hpo.commands import estimate, inspect, tune
from hpo.commands.exit_codes import BAD_INPUT
from hpo.errors import HpoError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Optuna hyperparameter search for transformer classifiers on one GPU, without CUDA OOM.",
)
app.command()(tune.tune)
app.command()(tune.worker)
app.command("sync-mlflow")(tune.sync_mlflow)
app.command()(inspect.trials)
app.command()(inspect.best)
app.command()(inspect.oom)
app.command()(inspect.report)
app.command()(estimate.estimate)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except HpoError as exc:  # pragma: no cover - commands already handle it
        typer.echo(f"error: {exc}", err=True)
        sys.exit(BAD_INPUT)
