"""Third-party logging, in one place: INFO lines of MLflow, Alembic, Optuna, transformers, urllib3 ... are
silenced unless ``--verbose``; warnings and errors always show. The choice travels to worker processes in
``HPO_VERBOSE`` (MLflow reads ``MLFLOW_LOGGING_LEVEL`` when it is imported, after this runs)."""

from __future__ import annotations

import logging
import os

VERBOSE_ENV = "HPO_VERBOSE"
NOISY = ("mlflow", "alembic", "sqlalchemy", "optuna", "transformers", "urllib3", "httpx", "filelock", "git")


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def quiet_logging(want_verbose: bool | None = None) -> None:
    """Set the third-party log levels: INFO with ``want_verbose`` (or HPO_VERBOSE), else WARNING."""
    if want_verbose is not None:
        os.environ[VERBOSE_ENV] = "1" if want_verbose else "0"
    level = logging.INFO if verbose() else logging.WARNING
    os.environ["MLFLOW_LOGGING_LEVEL"] = logging.getLevelName(level)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    if not verbose():
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    for name in NOISY:
        logging.getLogger(name).setLevel(level)
