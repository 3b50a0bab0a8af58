"""`hpo studies`, `trials`, `best`, `oom`, `report`: read studies back (from any shell or host);
none of them creates a storage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hpo.commands.common import (
    DataDirOpt,
    JsonOpt,
    MlflowUriOpt,
    OutputOpt,
    StorageOpt,
    StudyNameOpt,
    handles_errors,
)
from hpo.commands.tune_options import VerboseOpt
from hpo.config.study import mlflow_uri as resolve_mlflow_uri
from hpo.config.study import storage_url
from hpo.tracking.quiet import quiet_logging
from hpo.trial.keys import PRUNED_REASONS, TRIAL_STATES


@handles_errors
def studies(storage: StorageOpt = None, output_dir: OutputOpt = None, as_json: JsonOpt = False) -> None:
    """List the studies of a storage: trials by outcome (OOM-pruned among the pruned), best value by metric
    (front size for several objectives), last activity; newest first."""
    from hpo.results.studies import show_studies

    typer.echo(show_studies(storage_url(storage, output_dir), as_json))


@handles_errors
def trials(
    study: StudyNameOpt,
    storage: StorageOpt = None,
    output_dir: OutputOpt = None,
    state: Annotated[str | None, typer.Option(help=" | ".join((*TRIAL_STATES, "all")))] = None,
    reason: Annotated[
        str | None, typer.Option(help="For pruned trials: " + " | ".join(PRUNED_REASONS))
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON rows.")] = False,
) -> None:
    """List a study's trials: number, state, value, pruning reason, duration, key params."""
    from hpo.results.trials import show_trials

    typer.echo(show_trials(study, storage_url(storage, output_dir), state, reason, as_json))


@handles_errors
def best(
    study: StudyNameOpt,
    storage: StorageOpt = None,
    output_dir: OutputOpt = None,
    evaluate: Annotated[
        bool,
        typer.Option("--evaluate", help="Retrain the best config and score it on the held-out test split."),
    ] = False,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
    pick: Annotated[
        int | None,
        typer.Option("--pick", help="Multi-objective study: the Pareto-front trial --evaluate scores."),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Show the best trial (and optionally its test-split evaluation); for a multi-objective study
    (`hpo tune --objectives`), the Pareto front."""
    quiet_logging(verbose)  # third-party INFO lines: only with --verbose (hpo.tracking.quiet)
    from hpo.results.best_front import show

    typer.echo(show(study, storage_url(storage, output_dir), evaluate, data_dir, as_json, pick))


@handles_errors
def oom(
    study: StudyNameOpt,
    storage: StorageOpt = None,
    output_dir: OutputOpt = None,
    source: Annotated[
        str, typer.Option(help="optuna (trial user attrs) | mlflow (runs with oom_error=True)")
    ] = "optuna",
    mlflow_uri: MlflowUriOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """OOM trials: config, where it failed, estimated vs measured peak, and a summary line."""
    from hpo.results.oom_report import show_oom

    url, uri = storage_url(storage, output_dir), resolve_mlflow_uri(mlflow_uri, output_dir)
    typer.echo(show_oom(study, url, source, uri, as_json))


@handles_errors
def report(
    study: StudyNameOpt,
    storage: StorageOpt = None,
    output_dir: OutputOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="The HTML file to write (default: <output-dir>/<study>-report.html)."),
    ] = None,
) -> None:
    """One self-contained HTML report of a study (running or finished): the best value against the agent's
    baseline first, then history, importances, top trials, the memory map, the estimator's error, the
    timeline, reserved memory, outcomes and OOM trials. Prints the file's absolute path."""
    from hpo.results.report_html import show_report

    path = show_report(study, storage_url(storage, output_dir), out, output_dir)
    typer.echo(f"report: {path}")  # absolute
