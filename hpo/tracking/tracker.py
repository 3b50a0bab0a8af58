"""Experiment tracking behind a small interface: MLflowTracker (MlflowClient, explicit run ids), NullTracker.

One study run per study, one run per trial (linked by tag ``hpo.parent_run_id``). Statuses are set
explicitly (a ``with start_run()`` block would mark pruned trials FAILED): complete -> FINISHED, pruned by
estimate/early stop -> KILLED, OOM or error -> FAILED. The trial run stores the trial number as a tag and is
renamed to its outcome when it ends; the trial stores the run id as a user attr.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from hpo.errors import HpoError
from hpo.redact import redact, redact_text
from hpo.storage.rdb import is_server_url
from hpo.tracking.base import MlflowNotSetUp, NullTracker, RunStatus, Tracker, flatten
from hpo.tracking.buffer import Op, Outbox, replay_folder
from hpo.tracking.quiet import quiet_logging
from hpo.tracking.setup import get_or_create_experiment, get_or_create_parent

__all__ = [
    "MLflowTracker",
    "MlflowNotSetUp",
    "NullTracker",
    "RunStatus",
    "Tracker",
    "flatten",
    "make_tracker",
]

# A trial run names its study's run in this tag, not in mlflow.parentRunId: the UI folds child runs under
# their parent, and the trial runs are what the runs view should show when it opens
PARENT_RUN_TAG = "hpo.parent_run_id"
# MLflow 3's UI opens an experiment on the view its kind names; this one is the training-runs table
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def _quiet_mlflow() -> None:
    quiet_logging()  # hpo.tracking.quiet: the one place (``--verbose`` keeps the INFO lines)


class MLflowTracker:
    """MLflow tracking with explicit run ids (safe across worker processes).

    ``create=True`` (the process that starts a study, under its setup lock) creates the backend, the
    experiment and the parent run; ``create=False`` (a worker) only opens them. Writes after that go through
    an ``Outbox``: retried, else buffered in ``pending_dir`` and replayed, so tracking never fails a trial.
    """

    def __init__(
        self,
        tracking_uri: str,
        study_name: str,
        artifact_root: Path | None = None,
        study_params: dict[str, Any] | None = None,
        *,
        create: bool = True,
        pending_dir: Path | None = None,
    ) -> None:
        _quiet_mlflow()
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.study_name = study_name
        if is_server_url(tracking_uri):  # MLflow straight on a database server: no idle pooled connections
            os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")
        if tracking_uri.startswith("sqlite:///"):
            Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        folder = pending_dir or (artifact_root or Path(".")).parent / "mlflow-pending"
        self.outbox = Outbox(folder / _safe(study_name), self._execute, permanent=_permanent)
        try:
            self.client = MlflowClient(tracking_uri=tracking_uri)
            self.experiment_id = self._experiment(artifact_root, create)
            self.parent_run_id = self._parent_run(study_params or {}, create)
        except HpoError:
            raise
        except Exception as exc:  # MLflow raises many types for a bad URI
            raise HpoError(
                f"cannot use MLflow tracking URI {redact(tracking_uri)}: "
                f"{redact_text(str(exc).splitlines()[0][:200], tracking_uri)}",
                "pass a valid --mlflow-uri (e.g. sqlite:///runs/mlflow.db) or --no-mlflow",
            ) from exc

    def _experiment(self, artifact_root: Path | None, create: bool) -> str:
        location = artifact_root.resolve().as_uri() if artifact_root is not None else None
        kind = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}  # the training-runs view, also on older experiments
        found = get_or_create_experiment(self.client, self.study_name, location, create, tags=kind)
        if found is None:
            raise MlflowNotSetUp(
                f"MLflow has no experiment for study '{self.study_name}' in {redact(self.tracking_uri)}",
                "start the study with `hpo tune` first (it sets MLflow up before any worker)",
            )
        return found

    def _parent_run(self, study_params: dict[str, Any], create: bool) -> str:
        run_id, created = get_or_create_parent(self.client, self.experiment_id, self.study_name, create)
        if run_id is None:
            raise MlflowNotSetUp(
                f"MLflow has no parent run for study '{self.study_name}' in {redact(self.tracking_uri)}",
                "start the study with `hpo tune` first (it sets MLflow up before any worker)",
            )
        if created:
            self.log_params(run_id, study_params)
        elif create:
            self.client.update_run(run_id, status="RUNNING")  # resumed study
        return run_id

    def _execute(self, op: Op) -> str | None:
        """Run one write against MLflow (raises on failure; the outbox retries or buffers it)."""
        from mlflow.entities import Metric, Param, RunTag

        kind, run = op["op"], str(op.get("run"))
        if kind == "create_run":
            created = self.client.create_run(op["experiment"], run_name=op["name"], tags=op["tags"])
            return str(created.info.run_id)
        if kind == "log_batch":
            self.client.log_batch(
                run,
                metrics=[Metric(k, v, ts, step) for k, v, ts, step in op.get("metrics", [])],
                params=[Param(k, v) for k, v in op.get("params", {}).items()],
                tags=[RunTag(k, v) for k, v in op.get("tags", {}).items()],
            )
        elif kind == "log_text":
            self.client.log_text(run, op["text"], op["name"])
        elif kind == "log_artifact":
            self.client.log_artifact(run, op["path"])
        elif kind == "terminate":
            self.client.set_terminated(run, op["status"])
        return None

    def start_trial(
        self, number: int, params: dict[str, Any], tags: dict[str, str] | None = None
    ) -> str | None:
        all_tags = {
            PARENT_RUN_TAG: self.parent_run_id,
            "hpo.storage.study": self.study_name,
            "trial_number": str(number),
            "state": "RUNNING",
            **(tags or {}),
        }
        ref = self.outbox.new_ref()
        op = {
            "op": "create_run",
            "ref": ref,
            "experiment": self.experiment_id,
            "name": f"trial {number} · running",
        }
        run_id = self.outbox.submit({**op, "tags": all_tags})
        self.log_params(run_id, params)
        return run_id

    def log_params(self, run_id: str | None, params: dict[str, Any]) -> None:
        if run_id is None or not params:
            return
        items = list(flatten(params).items())
        for i in range(0, len(items), 100):
            self.outbox.submit({"op": "log_batch", "run": run_id, "params": dict(items[i : i + 100])})

    def log_metrics(self, run_id: str | None, metrics: dict[str, float], step: int | None = None) -> None:
        if run_id is None or not metrics:
            return
        now = int(time.time() * 1000)
        rows = [[k, float(v), now, step or 0] for k, v in metrics.items()]
        self.outbox.submit({"op": "log_batch", "run": run_id, "metrics": rows})

    def log_json(self, run_id: str | None, data: dict[str, Any], name: str) -> None:
        if run_id is None:
            return
        text = json.dumps(data, indent=2, default=str)
        self.outbox.submit({"op": "log_text", "run": run_id, "text": text, "name": name})

    def end_trial(self, run_id: str | None, status: RunStatus, tags: dict[str, str] | None = None) -> None:
        if run_id is None:
            return
        if tags:
            self.outbox.submit({"op": "log_batch", "run": run_id, "tags": dict(tags)})
        self.outbox.submit({"op": "terminate", "run": run_id, "status": status})

    def open_trial_runs(self) -> dict[int, str]:
        """Trial number -> run id of this study's trial runs MLflow still shows RUNNING ({} while MLflow is
        unavailable: the next start closes them)."""
        try:
            runs = self.client.search_runs(
                [self.experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=5000
            )
        except Exception:
            return {}
        return {
            int(r.data.tags["trial_number"]): str(r.info.run_id)
            for r in runs
            if r.data.tags.get("trial_number", "").isdigit()
        }

    def resolve(self, run_id: str | None) -> str | None:
        """The real id of a run created while MLflow was down, once its create_run went through."""
        return self.outbox.resolve(run_id)

    def flush(self) -> bool:
        """Replay this process's buffered writes; True when none are left."""
        return self.outbox.flush()

    def replay_pending(self) -> tuple[int, int]:
        """Replay the writes buffered by processes that are gone: (replayed, still pending)."""
        return replay_folder(self.outbox.folder, self._execute, _permanent)

    def log_study_report(self, path: Path) -> None:
        """The study's `hpo report` page as an artifact of its parent run (replaced at each end of a run)."""
        self.outbox.submit({"op": "log_artifact", "run": self.parent_run_id, "path": str(path.resolve())})

    def end_study(self, best: dict[str, Any] | None) -> None:
        """Log the best trial so far on the parent run (the parent stays open for resumes)."""
        if best:
            self.log_metrics(
                self.parent_run_id, {k: v for k, v in best.items() if isinstance(v, (int, float))}
            )
            tag = {"best_trial": str(best.get("best_trial", ""))}
            self.outbox.submit({"op": "log_batch", "run": self.parent_run_id, "tags": tag})
        self.outbox.submit({"op": "terminate", "run": self.parent_run_id, "status": "FINISHED"})
        self.outbox.flush()


def runs_view_url(experiment_id: str, base: str = "http://127.0.0.1:5000") -> str:
    """The `mlflow ui` page of a study's trial runs (MLflow 3.17 otherwise opens on its GenAI overview)."""
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "study"


def _permanent(exc: Exception) -> bool:
    """MLflow rejected the write itself (bad value, unknown run): retrying cannot help."""
    code = str(getattr(exc, "error_code", ""))
    return code in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "INVALID_STATE")


def make_tracker(
    enabled: bool,
    tracking_uri: str,
    study_name: str,
    artifact_root: Path,
    study_params: dict[str, Any] | None = None,
    *,
    create: bool = True,
) -> Tracker:
    """MLflowTracker when enabled (``create``: set up the backend and parent run), NullTracker otherwise."""
    if not enabled:
        return NullTracker()
    return MLflowTracker(tracking_uri, study_name, artifact_root, study_params, create=create)
