"""One-time study setup by the process that starts a study (serial `hpo tune` or the `--par` launcher).

Under a file lock beside the output dir and each SQLite file (so concurrent starters take turns), it checks
the folders and databases, creates or migrates the Optuna storage and the study, checks the study's
fingerprint, fails the stale RUNNING trials (process gone from this host, or never recorded), creates the
MLflow backend, experiment and parent run, replays MLflow writes buffered by dead processes and closes
MLflow runs of finished trials. Workers started afterwards only open what exists (``open_for_worker``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import optuna
from filelock import FileLock, Timeout
from optuna.trial import TrialState

from hpo.config.study import DEFAULT_OUTPUT_DIR, StudyConfig
from hpo.errors import HpoError
from hpo.redact import redact, redact_text
from hpo.run.fingerprint import check_resume
from hpo.run.liveness import HOST, is_stale
from hpo.run.setup import Setup, tracker_for
from hpo.storage.dbcheck import check_mlflow_db, check_sqlite, check_writable, sqlite_path
from hpo.storage.rdb import db_lock
from hpo.storage.study import BASELINE_ATTR, create_or_load, open_study
from hpo.tracking.tracker import MlflowNotSetUp, MLflowTracker, Tracker
from hpo.trial import keys as K
from hpo.trial import outcomes

SETUP_LOCK = ".hpo-setup.lock"
LOCK_TIMEOUT_S = 600.0


def lock_paths(cfg: StudyConfig) -> list[Path]:
    """The setup locks of ``cfg``: in the output dir and in the folder of each SQLite file it uses."""
    paths = {(cfg.output_dir / SETUP_LOCK).resolve()}
    urls = [cfg.storage_url] + ([cfg.mlflow_tracking_uri] if cfg.mlflow else [])
    for url in urls:
        db = sqlite_path(url)
        if db is not None:
            paths.add(db.resolve().parent / SETUP_LOCK)
    return sorted(paths)


@contextlib.contextmanager
def setup_lock(cfg: StudyConfig, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold every setup lock of ``cfg`` (in a fixed order: no deadlock between starters); with a server
    storage also a lock inside the database, so starters on different hosts take turns too."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(db_lock(cfg.storage_url, f"setup:{cfg.study}", timeout))
        except HpoError:
            raise
        except Exception as exc:
            raise HpoError(
                f"cannot take the setup lock in storage {redact(cfg.storage_url)}: "
                f"{redact_text(str(exc).splitlines()[0][:200], cfg.storage_url)}",
                "check that the database server is reachable (--storage / OPTUNA_STORAGE)",
            ) from exc
        for path in lock_paths(cfg):
            try:
                stack.enter_context(FileLock(str(path), timeout=timeout))
            except Timeout as exc:
                raise HpoError(
                    f"another hpo start held the setup lock {path} for {timeout:.0f}s",
                    "wait for it to finish, or remove the lock file if no hpo process is running",
                ) from exc
        yield


def check_folders(cfg: StudyConfig) -> None:
    """The output, storage and MLflow folders are writable with free disk (seconds, one error line)."""
    check_writable(cfg.output_dir, "output dir")
    for what, url in (("storage dir", cfg.storage_url), ("MLflow dir", cfg.mlflow_tracking_uri)):
        db = sqlite_path(url) if what != "MLflow dir" or cfg.mlflow else None
        if db is not None:
            check_writable(db.parent, what)


def check_databases(cfg: StudyConfig) -> None:
    """The SQLite files are intact and not half-migrated (under the setup lock: no starter is migrating)."""
    db = sqlite_path(cfg.storage_url)
    if db is not None:
        check_sqlite(db, "Optuna storage")
    mlflow_db = sqlite_path(cfg.mlflow_tracking_uri) if cfg.mlflow else None
    if mlflow_db is not None:
        check_mlflow_db(mlflow_db)


def fail_dead_trials(study: optuna.Study, tracker: Tracker) -> list[int]:
    """Fail (and retry once) the stale RUNNING trials (``hpo.run.liveness.is_stale``): those whose process
    is gone from this host and those that never recorded one; their numbers."""
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_stale(trial):
            continue
        pid = trial.user_attrs.get(K.PID)
        why = "its process never recorded itself"
        if isinstance(pid, int):  # as is_stale tells the two apart
            why = f"process {pid} on {HOST} is gone"
        if outcomes.abandoned(study, trial, tracker, why):
            failed.append(trial.number)
    return failed


def record_baseline(study: optuna.Study, setup: Setup) -> None:
    """Keep the agent's metric and its trivial prediction's score on the val split with the study:
    `hpo report` sets the best value against it (studies from before it was recorded have none)."""
    agent = setup.agent
    value = {
        "metric": agent.metric_name,
        "name": agent.baseline_name,
        "value": float(agent.majority_baseline(setup.splits, "val")),
    }
    if study.user_attrs.get(BASELINE_ATTR) != value:
        study.set_user_attr(BASELINE_ATTR, value)


def start_study(cfg: StudyConfig, setup: Setup) -> tuple[optuna.Study, Tracker]:
    """Create or resume the study and its MLflow side, once, before any trial or worker starts."""
    check_folders(cfg)
    with setup_lock(cfg):
        check_databases(cfg)
        study = create_or_load(cfg)
        check_resume(study, cfg, setup, cfg.allow_changes)
        record_baseline(study, setup)
        tracker = tracker_for(cfg)
        fail_dead_trials(study, tracker)
        replay = getattr(tracker, "replay_pending", None)
        if replay is not None:
            replay()
        outcomes.close_stale_runs(study, tracker)
    return study, tracker


def open_for_worker(cfg: StudyConfig, setup: Setup) -> tuple[optuna.Study, Tracker]:
    """A worker's study and tracker: open what the starter set up. A worker joined by hand with its own YAML
    must match the study's fingerprint up to compatible changes (epochs, ...); if it has MLflow on for a
    study that ran without it, it sets MLflow up under the setup lock like a starter."""
    study = open_study(cfg)
    check_resume(study, cfg, setup, cfg.allow_changes, joining=True)
    try:
        return study, tracker_for(cfg, create=False)
    except MlflowNotSetUp:
        with setup_lock(cfg):
            check_databases(cfg)
            return study, tracker_for(cfg)


def sync_mlflow(study: str, output_dir: Path | None, mlflow_uri: str | None) -> tuple[int, int]:
    """`hpo sync-mlflow`: replay MLflow writes buffered by finished processes; (replayed, still pending)."""
    cfg = StudyConfig(study=study, output_dir=output_dir or DEFAULT_OUTPUT_DIR, mlflow_uri=mlflow_uri)
    db = sqlite_path(cfg.mlflow_tracking_uri)
    if db is not None and not db.is_file():
        raise HpoError(f"no MLflow database at {db}", "pass the --output-dir or --mlflow-uri of the study")
    with setup_lock(cfg):
        mlflow_db = sqlite_path(cfg.mlflow_tracking_uri)
        if mlflow_db is not None:
            check_mlflow_db(mlflow_db)
        tracker = MLflowTracker(cfg.mlflow_tracking_uri, study, cfg.output_dir / "mlartifacts", create=False)
        return tracker.replay_pending()
