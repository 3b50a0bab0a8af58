"""`hpo tune --par N`: real worker processes against one SQLite storage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "studies" / "ci-tiny.yaml"


def tune_cmd(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "hpo",
        "tune",
        "--config",
        str(CONFIG),
        "--output-dir",
        str(out),
        "--no-mlflow",
        "--epochs",
        "1",
        *extra,
    ]


def load(out: Path) -> optuna.Study:
    return optuna.load_study(study_name="ci-tiny", storage=f"sqlite:///{(out / 'hpo.db').resolve()}")


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.pop("HPO_INJECT_OOM", None)
    return e


def wait_for(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


@pytest.mark.slow
def test_three_workers_twenty_trials(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    res = subprocess.run(
        tune_cmd(out, "--par", "3", "--n-trials", "20"),
        capture_output=True,
        text=True,
        timeout=600,
        env=env(),
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    study = load(out)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert 20 <= len(finished) <= 22
    assert not [t for t in study.trials if t.state in (TrialState.FAIL, TrialState.RUNNING)]
    assert "database is locked" not in res.stdout + res.stderr
    assert "3 workers" in res.stdout


def _running_trial_file(out: Path) -> list[Path]:
    return list((out / "workers" / "ci-tiny").glob("*.trial"))


def run_until_a_trial_runs(
    out: Path, n_trials: int, act: Callable[[subprocess.Popen[str]], None], timeout: float
) -> tuple[int, str]:
    """Start `hpo tune --par 2` (slow trials); when a worker runs a trial, call ``act(proc)``; wait."""
    proc = subprocess.Popen(
        [*tune_cmd(out, "--par", "2", "--n-trials", str(n_trials)), "--epochs", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env(),
    )
    try:
        assert wait_for(lambda: bool(_running_trial_file(out)), 120), "no worker started a trial"
        act(proc)
        stdout, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, stdout


@pytest.mark.slow
def test_kill_9_worker_trial_is_failed_then_retried(tmp_path: Path) -> None:
    out = tmp_path / "runs"

    # slow trials (3 epochs, full train split) so there is time to kill one mid-trial
    def kill_a_worker(proc: subprocess.Popen[str]) -> None:
        os.kill(int(_running_trial_file(out)[0].stem), signal.SIGKILL)

    returncode, stdout = run_until_a_trial_runs(out, 4, kill_a_worker, timeout=600)
    assert returncode == 0, stdout[-3000:]
    assert "died with exit code" in stdout
    study = load(out)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and failed[0].user_attrs.get("error") == "worker process died"
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert retried and retried[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    # the retry re-runs the same config (a kill during sampling leaves the rest to be sampled anew)
    assert failed[0].params.items() <= retried[0].params.items()
    assert len([t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) >= 4


@pytest.mark.slow
def test_sigint_leaves_no_running_trial_and_rerun_resumes(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    returncode, stdout = run_until_a_trial_runs(
        out, 6, lambda proc: proc.send_signal(signal.SIGINT), timeout=120
    )
    assert returncode == 130, stdout[-3000:]
    study = load(out)
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    kept = {t.number: t.state for t in study.trials if t.state.is_finished()}
    res = subprocess.run(
        tune_cmd(out, "--n-trials", "3"), capture_output=True, text=True, timeout=600, env=env()
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    after = load(out)
    assert {t.number: t.state for t in after.trials if t.number in kept} == kept
    assert len([t for t in after.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) >= 3


def test_worker_joins_an_existing_study(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    res = subprocess.run(
        tune_cmd(out, "--n-trials", "1"), capture_output=True, text=True, timeout=300, env=env()
    )
    assert res.returncode == 0, res.stderr[-2000:]
    storage = f"sqlite:///{(out / 'hpo.db').resolve()}"
    # a second shell joins with the study's stored config and a higher target from its own YAML
    cfg = tmp_path / "more.yaml"
    cfg.write_text(CONFIG.read_text().replace("n_trials: 3", "n_trials: 3\nmax_train_examples: 32"))
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpo",
            "worker",
            "--study",
            "ci-tiny",
            "--storage",
            storage,
            "--config",
            str(cfg),
            "--output-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env(),
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    finished = [t for t in load(out).trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3
    res = subprocess.run(
        [sys.executable, "-m", "hpo", "worker", "--study", "ghost", "--storage", storage],
        capture_output=True,
        text=True,
        timeout=120,
        env=env(),
    )
    assert res.returncode == 2 and "no study named 'ghost'" in res.stderr
