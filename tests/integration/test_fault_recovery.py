"""Real faults against `hpo tune`: kill -9 then rerun, a locked MLflow database, a full disk."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from tests.support import CI_CONFIG, hpo_cmd, quiet_env, run_cli, wait_for


def tune_cmd(out: Path, *extra: str) -> list[str]:
    return hpo_cmd("tune", "--config", str(CI_CONFIG), "--output-dir", str(out), *extra)


def load(out: Path) -> optuna.Study:
    return optuna.load_study(study_name="ci-tiny", storage=f"sqlite:///{(out / 'hpo.db').resolve()}")


def mlflow(out: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{(out / 'mlflow.db').resolve()}")


def running(out: Path) -> list[optuna.trial.FrozenTrial]:
    try:
        trials = load(out).trials
    except Exception:  # not created yet
        return []
    return [t for t in trials if t.state == TrialState.RUNNING and "mlflow_run_id" in t.user_attrs]


def start(out: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        tune_cmd(out, *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env or quiet_env(),
    )


def test_kill_9_then_immediate_rerun_leaves_nothing_running(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    proc = start(out, "--n-trials", "2", "--epochs", "5")
    try:
        assert wait_for(lambda: bool(running(out)), 180), "no trial started"
        killed = running(out)[0]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # at once (no heartbeat wait); fewer epochs is a compatible change of the study
    res = run_cli(tune_cmd(out, "--n-trials", "2", "--epochs", "1", "--allow-changes"), timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    trials = load(out).trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert trials[killed.number].state == TrialState.FAIL
    assert "is gone" in trials[killed.number].user_attrs["error"]
    assert mlflow(out).get_run(killed.user_attrs["mlflow_run_id"]).info.status == "FAILED"


def hold_exclusive_lock(db: Path, seconds: float, held: threading.Event) -> None:
    conn = sqlite3.connect(db, timeout=60, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    held.set()
    time.sleep(seconds)
    conn.execute("COMMIT")
    conn.close()


def test_locked_mlflow_db_for_30s_keeps_the_trial_and_its_data_arrives_after(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    proc = start(out, "--n-trials", "1", "--epochs", "2")
    held = threading.Event()
    try:
        assert wait_for(lambda: bool(running(out)), 180), "no trial started"
        locker = threading.Thread(target=hold_exclusive_lock, args=(out / "mlflow.db", 30.0, held))
        locker.start()
        assert held.wait(60)
        stdout, _ = proc.communicate(timeout=600)
        locker.join()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stdout[-3000:]
    trial = load(out).trials[0]
    assert trial.state == TrialState.COMPLETE, trial.user_attrs
    res = run_cli(hpo_cmd("sync-mlflow", "--study", "ci-tiny", "--output-dir", str(out)), timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    run = mlflow(out).search_runs(
        [mlflow(out).get_experiment_by_name("ci-tiny").experiment_id],  # type: ignore[union-attr]
        filter_string="tags.trial_number = '0'",
    )[0]
    assert run.info.status == "FINISHED" and "best_val_macro_f1" in run.data.metrics
    assert not list((out / "mlflow-pending").rglob("*.jsonl"))


@pytest.mark.parametrize("par", [1, 2], ids=["serial", "par2"])
def test_disk_full_mid_run_ends_cleanly(tmp_path: Path, par: int) -> None:
    """Serial or --par (a worker exits DISK_FULL, the launcher stops the others): one line, exit 2."""
    out = tmp_path / "runs"
    first = run_cli(tune_cmd(out, "--n-trials", "1", "--epochs", "1"), timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    env = {**quiet_env(), "HPO_INJECT_ENOSPC": "epoch=0,step=1"}
    res = subprocess.run(
        tune_cmd(out, "--n-trials", "4", "--epochs", "1", *(["--par", str(par)] if par > 1 else [])),
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert res.returncode == 2 and len(errors) == 1, res.stdout[-3000:] + res.stderr[-3000:]
    assert "disk full" in errors[0] and "Traceback" not in res.stderr
    trials = load(out).trials
    assert trials[0].state == TrialState.COMPLETE  # finished trials intact
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    statuses = {
        r.info.status
        for r in mlflow(out).search_runs(
            [mlflow(out).get_experiment_by_name("ci-tiny").experiment_id],  # type: ignore[union-attr]
            filter_string="tags.trial_number != ''",
        )
    }
    assert "RUNNING" not in statuses


def test_a_worker_started_by_hand_says_disk_full_once_and_exits_28(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    first = run_cli(tune_cmd(out, "--n-trials", "1", "--epochs", "1"), timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    env = {**quiet_env(), "HPO_INJECT_ENOSPC": "epoch=0,step=1"}
    # the study's target is 1 (reached): raise it through the worker's own config so it runs a trial
    cmd = hpo_cmd("worker", "--study", "ci-tiny", "--output-dir", str(out), "--config", str(CI_CONFIG))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert res.returncode == 28 and len(errors) == 1 and "disk full" in errors[0], res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert not [t for t in load(out).trials if t.state == TrialState.RUNNING]
