"""Experiment tracking behind a small interface: MLflowTracker (MlflowClient, explicit run ids), NullTracker.

One parent run per study, one child run per trial. Statuses are set explicitly (a ``with start_run()`` block
would mark pruned trials FAILED): complete -> FINISHED, pruned by estimate/early stop -> KILLED, OOM or
error -> FAILED. The child run stores the trial number as a tag; the trial stores the run id as a user attr.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Literal, Protocol

from hpo.errors import HpoError

RunStatus = Literal["FINISHED", "KILLED", "FAILED"]
PARENT_TAG = "hpo.parent"


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


def _quiet_mlflow() -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)


class MLflowTracker:
    """MLflow tracking with explicit run ids (safe across worker processes)."""

    def __init__(
        self,
        tracking_uri: str,
        study_name: str,
        artifact_root: Path | None = None,
        study_params: dict[str, Any] | None = None,
    ) -> None:
        _quiet_mlflow()
        from mlflow.tracking import MlflowClient

        for name in ("mlflow", "alembic", "sqlalchemy"):
            logging.getLogger(name).setLevel(logging.WARNING)

        self.tracking_uri = tracking_uri
        self.study_name = study_name
        if tracking_uri.startswith("sqlite:///"):
            Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client = MlflowClient(tracking_uri=tracking_uri)
            self.experiment_id = self._experiment(artifact_root)
            self.parent_run_id = self._parent_run(study_params or {})
        except Exception as exc:  # MLflow raises many types for a bad URI
            raise HpoError(
                f"cannot use MLflow tracking URI {tracking_uri}: {str(exc).splitlines()[0][:200]}",
                "pass a valid --mlflow-uri (e.g. sqlite:///runs/mlflow.db) or --no-mlflow",
            ) from exc

    def _experiment(self, artifact_root: Path | None) -> str:
        exp = self.client.get_experiment_by_name(self.study_name)
        if exp is not None:
            return str(exp.experiment_id)
        location = artifact_root.resolve().as_uri() if artifact_root is not None else None
        try:
            return str(self.client.create_experiment(self.study_name, artifact_location=location))
        except Exception:  # another worker created it first
            exp = self.client.get_experiment_by_name(self.study_name)
            if exp is None:
                raise
            return str(exp.experiment_id)

    def _parent_run(self, study_params: dict[str, Any]) -> str:
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = 'true'",
            max_results=1,
            order_by=["attributes.start_time ASC"],
        )
        if runs:
            run_id = str(runs[0].info.run_id)
            self.client.update_run(run_id, status="RUNNING")  # resumed study
            return run_id
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"study:{self.study_name}",
            tags={PARENT_TAG: "true", "hpo.study": self.study_name},
        )
        self.log_params(run.info.run_id, study_params)
        return str(run.info.run_id)

    def start_trial(
        self, number: int, params: dict[str, Any], tags: dict[str, str] | None = None
    ) -> str | None:
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        all_tags = {
            MLFLOW_PARENT_RUN_ID: self.parent_run_id,
            "hpo.study": self.study_name,
            "trial_number": str(number),
            "state": "RUNNING",
            **(tags or {}),
        }
        run = self.client.create_run(self.experiment_id, run_name=f"trial-{number}", tags=all_tags)
        self.log_params(run.info.run_id, params)
        return str(run.info.run_id)

    def log_params(self, run_id: str | None, params: dict[str, Any]) -> None:
        if run_id is None or not params:
            return
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in flatten(params).items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def log_metrics(self, run_id: str | None, metrics: dict[str, float], step: int | None = None) -> None:
        if run_id is None or not metrics:
            return
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id, metrics=[Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        )

    def log_json(self, run_id: str | None, data: dict[str, Any], name: str) -> None:
        if run_id is None:
            return
        self.client.log_text(run_id, json.dumps(data, indent=2, default=str), name)

    def end_trial(self, run_id: str | None, status: RunStatus, tags: dict[str, str] | None = None) -> None:
        if run_id is None:
            return
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in {**(tags or {})}.items()])
        self.client.set_terminated(run_id, status)

    def end_study(self, best: dict[str, Any] | None) -> None:
        """Log the best trial so far on the parent run (the parent stays open for resumes)."""
        if best:
            self.log_metrics(
                self.parent_run_id, {k: v for k, v in best.items() if isinstance(v, (int, float))}
            )
            self.client.set_tag(self.parent_run_id, "best_trial", str(best.get("best_trial", "")))
        self.client.set_terminated(self.parent_run_id, "FINISHED")


def make_tracker(
    enabled: bool,
    tracking_uri: str,
    study_name: str,
    artifact_root: Path,
    study_params: dict[str, Any] | None = None,
) -> Tracker:
    """MLflowTracker when enabled, NullTracker otherwise."""
    if not enabled:
        return NullTracker()
    return MLflowTracker(tracking_uri, study_name, artifact_root, study_params)
