"""What every command shares: option types (each defined once) and the error boundary (HpoError -> exit 2)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from hpo.commands.exit_codes import BAD_INPUT, STORAGE_DOWN
from hpo.errors import HpoError, StorageDown

F = TypeVar("F", bound=Callable[..., Any])

StudyOpt = Annotated[str | None, typer.Option("--study", help="Study name (same name = resume).")]
StudyNameOpt = Annotated[str, typer.Option("--study", help="Study name.")]
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage", help="Optuna storage URL (default: OPTUNA_STORAGE, else sqlite under --output-dir)."
    ),
]
OutputOpt = Annotated[
    Path | None,
    typer.Option(
        "--output-dir", help="Where the SQLite storage, MLflow db and calibration live (default: runs)."
    ),
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Study YAML (see configs/studies/).")]
MlflowUriOpt = Annotated[
    str | None,
    typer.Option("--mlflow-uri", help="MLflow tracking URI (default: sqlite under --output-dir)."),
]
GpuMemoryOpt = Annotated[
    str | None,
    typer.Option(
        "--gpu-memory",
        help="GPU memory, e.g. 24GB (default: the detected card; without CUDA tune simulates it, "
        "estimate assumes 24GB).",
    ),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        "--data",
        help="The data: a ReDSM5-format folder (criteria, evidence), or for classify a CSV, JSONL or Parquet "
        "file or a datasets save_to_disk folder (default: the agent's shipped synthetic sample).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def fail(message: str) -> typer.Exit:
    """Print one `error:` line and return the exit for bad input."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=BAD_INPUT)


def handles_errors(fn: F) -> F:
    """Turn HpoError into one line on stderr and exit code 2 (a storage outage past --storage-retry: 75)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HpoError as exc:
            if isinstance(exc, StorageDown):  # the run stopped; rerun once the database is back
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(code=STORAGE_DOWN) from None
            raise fail(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def split_list(text: str | None) -> list[str] | None:
    """ "a, b,c" -> ["a", "b", "c"]; None or "" -> None."""
    return [m.strip() for m in text.split(",") if m.strip()] if text else None
