"""Several hosts on one PostgreSQL study and one MLflow (real server: tests/postgres.py).

Two "hosts" are two output dirs on this machine: host A runs `hpo tune --par 2`, host B a hand-started
`hpo worker`; both get the storage and MLflow URLs (with a password) by environment only.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import optuna
import psutil
import pytest
from optuna.trial import TrialState

from hpo.storage.study import storage_of
from hpo.tracking.tracker import PARENT_RUN_TAG
from tests.postgres import PASSWORD_IN_URL
from tests.support import CI_CONFIG, hpo_cmd, quiet_env, wait_for

pytestmark = pytest.mark.slow


def _env(storage: str, mlflow: str | None = None, **extra: str) -> dict[str, str]:
    env = quiet_env() | {"OPTUNA_STORAGE": storage, **extra}
    if mlflow:
        env["HPO_MLFLOW_URI"] = mlflow
    return env


def _study_exists(storage: str, name: str = "ci-tiny") -> bool:
    try:
        return name in optuna.get_all_study_names(storage=storage)
    except Exception:
        return False


def _hpo_cmdlines() -> list[str]:
    """Command lines of every `python -m hpo` process on this machine now."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info.get("cmdline") or []
        if "hpo" in cmd and "-m" in cmd:
            found.append(" ".join(cmd))
    return found


def _files_text(*roots: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for root in roots for p in root.rglob("*") if p.is_file()}


def test_two_hosts_one_study_one_mlflow_no_password_anywhere(
    tmp_path: Path, pg_url: str, pg_mlflow_url: str
) -> None:
    assert PASSWORD_IN_URL in pg_url  # the secret the test looks for
    host_a, host_b = tmp_path / "host-a", tmp_path / "host-b"
    env = _env(pg_url, pg_mlflow_url)
    n_trials = 8
    tune = subprocess.Popen(
        hpo_cmd(
            "tune",
            "--config",
            str(CI_CONFIG),
            "--output-dir",
            str(host_a),
            "--epochs",
            "1",
            "--par",
            "2",
            "--n-trials",
            str(n_trials),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    worker = None
    argv: list[str] = []
    try:
        assert wait_for(lambda: _study_exists(pg_url), 180), "host A never created the study"
        worker = subprocess.Popen(
            hpo_cmd("worker", "--study", "ci-tiny", "--output-dir", str(host_b)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        deadline = time.monotonic() + 600
        while tune.poll() is None and time.monotonic() < deadline:
            argv += _hpo_cmdlines()
            time.sleep(1.0)
        out_a, _ = tune.communicate(timeout=60)
        out_b, _ = worker.communicate(timeout=300)
    finally:
        for proc in (tune, worker):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert tune.returncode == 0, out_a[-4000:]
    assert worker.returncode == 0, out_b[-4000:]

    study = optuna.load_study(study_name="ci-tiny", storage=pg_url)
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert n_trials <= len(finished) <= n_trials + 3, [t.state for t in trials]
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    # host B's worker (its own output dir and ledger) ran trials of the same study
    assert any(t.user_attrs.get("pid") == worker.pid for t in trials), out_b[-3000:]

    # one MLflow: exactly one parent run, every trial's run a child of it, from both hosts
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=pg_mlflow_url)
    exp = client.get_experiment_by_name("ci-tiny")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("hpo.parent") == "true"]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    children = [r for r in runs if r.data.tags.get(PARENT_RUN_TAG) == parents[0].info.run_id]
    trial_runs = {t.user_attrs.get("mlflow_run_id") for t in trials} - {None}
    assert trial_runs and trial_runs <= {r.info.run_id for r in children}
    assert len(children) == len(runs) - 1

    # the storage password: nowhere in MLflow, the study, files, command lines or output
    texts = [str(r.data.params) + str(r.data.tags) for r in runs]
    storage = storage_of(study)
    texts += [str(study.user_attrs), str(storage.get_study_system_attrs(study._study_id))]
    texts += [str(t.user_attrs) + str(t.system_attrs) + str(t.params) for t in trials]
    texts += [out_a, out_b, *argv]
    assert argv and any("worker" in a for a in argv)
    assert not [t for t in texts if PASSWORD_IN_URL in t]
    leaked = [p for p, data in _files_text(host_a, host_b).items() if PASSWORD_IN_URL.encode() in data]
    assert not leaked
    config = host_a / "workers" / "ci-tiny" / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert "postgresql://hpo:***@" in out_a  # printed URLs are redacted, not dropped

    # trials / best / oom read the shared storage from anywhere (a third folder, the URL by environment)
    for command in ("trials", "best", "oom"):
        res = subprocess.run(
            hpo_cmd(command, "--study", "ci-tiny", "--output-dir", str(tmp_path / "laptop")),
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert res.returncode == 0, res.stderr[-2000:]
        assert PASSWORD_IN_URL not in res.stdout + res.stderr


def test_kill_9_of_a_worker_mid_trial_fails_by_heartbeat_and_is_retried(tmp_path: Path, pg_url: str) -> None:
    """An `hpo worker` killed with SIGKILL mid-trial on PostgreSQL: a worker on another host (which cannot see
    the dead pid) fails the trial through its stale heartbeat and runs the retry."""
    env = _env(pg_url, HPO_HEARTBEAT_INTERVAL_S="1", HPO_HEARTBEAT_GRACE_S="4")
    host_a, host_b = tmp_path / "host-a", tmp_path / "host-b"
    base = ("--config", str(CI_CONFIG), "--no-mlflow")
    created = subprocess.run(
        hpo_cmd("tune", *base, "--output-dir", str(host_a), "--n-trials", "1"),
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert created.returncode == 0, created.stdout[-2000:] + created.stderr[-2000:]
    # the YAML's target (3 trials) for the hand-started workers: the study has 1
    first = subprocess.Popen(
        hpo_cmd("worker", "--study", "ci-tiny", "--config", str(CI_CONFIG), "--output-dir", str(host_a)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    study = optuna.load_study(study_name="ci-tiny", storage=pg_url)

    def mine() -> list[optuna.trial.FrozenTrial]:
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return [t for t in running if t.user_attrs.get("pid") == first.pid]

    try:
        assert wait_for(lambda: bool(mine()), 300), "the worker started no trial"
        killed = mine()[0].number
        time.sleep(2.0)  # inside the trial (2 epochs)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert study.trials[killed].state == TrialState.RUNNING  # nobody on this "host" cleaned it up
    worker = subprocess.run(
        hpo_cmd("worker", "--study", "ci-tiny", "--config", str(CI_CONFIG), "--output-dir", str(host_b)),
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]
    trials = study.get_trials(deepcopy=False)
    assert trials[killed].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1 and retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert len([t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) >= 3


_START = """
import sys, optuna
from hpo.storage.study import make_storage
storage = make_storage(sys.argv[1])
optuna.create_study(storage=storage, study_name="race", direction="maximize", load_if_exists=True)
engine = storage.engine
print(engine.pool.size(), engine.pool._max_overflow)
"""


def test_many_processes_create_one_study_at_once_on_an_empty_database(pg_url: str) -> None:
    """Optuna's first-run race (tables, version row, the study) on a fresh PostgreSQL database: six
    processes start at once and all get the one study; each holds a pool of 2 connections, no overflow."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _START, pg_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err[-2000:]
        assert out.split() == ["2", "0"]
    assert optuna.get_all_study_names(storage=pg_url) == ["race"]
