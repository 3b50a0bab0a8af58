"""What the objective logs per trial, behind a small interface (``Tracker``), and the tracker that logs
nothing (``--no-mlflow``); ``hpo.tracking.tracker`` holds the MLflow one and re-exports these."""

from __future__ import annotations

from typing import Any, Literal, Protocol

from hpo.errors import HpoError

RunStatus = Literal["FINISHED", "KILLED", "FAILED"]


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested dicts into dotted keys with string values (MLflow params are strings)."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)[:6000]
    return out


class MlflowNotSetUp(HpoError):
    """A worker found no experiment or parent run for its study (the starter sets them up)."""


class Tracker(Protocol):
    """What the objective logs per trial."""

    def start_trial(
        self, number: int, params: dict[str, Any], tags: dict[str, str] | None = None
    ) -> str | None: ...

    def log_metrics(self, run_id: str | None, metrics: dict[str, float], step: int | None = None) -> None: ...

    def log_params(self, run_id: str | None, params: dict[str, Any]) -> None: ...

    def log_json(self, run_id: str | None, data: dict[str, Any], name: str) -> None: ...

    def end_trial(
        self, run_id: str | None, status: RunStatus, tags: dict[str, str] | None = None
    ) -> None: ...

    def open_trial_runs(self) -> dict[int, str]: ...

    def resolve(self, run_id: str | None) -> str | None: ...

    def flush(self) -> bool: ...


class NullTracker:
    """Tracks nothing (``--no-mlflow``)."""

    def start_trial(
        self, number: int, params: dict[str, Any], tags: dict[str, str] | None = None
    ) -> str | None:
        return None

    def log_metrics(self, run_id: str | None, metrics: dict[str, float], step: int | None = None) -> None:
        return None

    def log_params(self, run_id: str | None, params: dict[str, Any]) -> None:
        return None

    def log_json(self, run_id: str | None, data: dict[str, Any], name: str) -> None:
        return None

    def end_trial(self, run_id: str | None, status: RunStatus, tags: dict[str, str] | None = None) -> None:
        return None

    def open_trial_runs(self) -> dict[int, str]:
        return {}

    def resolve(self, run_id: str | None) -> str | None:
        return run_id

    def flush(self) -> bool:
        return True
