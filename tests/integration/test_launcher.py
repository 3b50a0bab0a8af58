"""`hpo tune --par N`: real worker processes against one SQLite storage."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.support import CI_CONFIG, hpo_cmd, quiet_env, run_cli, wait_for

CONFIG = CI_CONFIG


def tune_cmd(out: Path, *extra: str, config: Path = CONFIG) -> list[str]:
    return hpo_cmd(
        "tune", "--config", str(config), "--output-dir", str(out), "--no-mlflow", "--epochs", "1", *extra
    )


def load(out: Path) -> optuna.Study:
    return optuna.load_study(study_name="ci-tiny", storage=f"sqlite:///{(out / 'hpo.db').resolve()}")


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
        env=quiet_env(),
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
def test_three_workers_twenty_trials(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    res = run_cli(tune_cmd(out, "--par", "3", "--n-trials", "20"), timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    study = load(out)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert 20 <= len(finished) <= 22
    assert not [t for t in study.trials if t.state in (TrialState.FAIL, TrialState.RUNNING)]
    assert "database is locked" not in res.stdout + res.stderr
    assert "3 workers" in res.stdout


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
    assert len(failed) == 1 and failed[0].user_attrs.get("error", "").startswith("worker process died (")
    death = failed[0].user_attrs["worker_death"]
    assert death["signal"] == "SIGKILL" and death["phase"] != "unknown" and death["host_ram_total_gb"] > 0
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert retried and retried[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    # the retry re-runs the same config (a kill during sampling leaves the rest to be sampled anew)
    assert failed[0].params.items() <= retried[0].params.items()
    assert len([t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) >= 4
    # the replacement worker samples its own stream: no fresh proposal repeats a config already tried
    fresh = [t for t in study.trials if "failed_trial" not in t.system_attrs]
    assert len({json.dumps(t.params, sort_keys=True) for t in fresh}) == len(fresh), [t.params for t in fresh]


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
    res = run_cli(tune_cmd(out, "--n-trials", "3", "--allow-changes"), timeout=600)  # 3 epochs -> 1
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    after = load(out)
    assert {t.number: t.state for t in after.trials if t.number in kept} == kept
    assert len([t for t in after.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) >= 3


def test_worker_joins_an_existing_study(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    res = run_cli(tune_cmd(out, "--n-trials", "1"), timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    storage = f"sqlite:///{(out / 'hpo.db').resolve()}"
    # a second shell joins with the study's stored config and a higher target from its own YAML
    cfg = tmp_path / "more.yaml"
    cfg.write_text(CONFIG.read_text())  # max_train_examples etc. must match: they are in the fingerprint
    res = run_cli(
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
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    finished = [t for t in load(out).trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3
    res = run_cli(
        [sys.executable, "-m", "hpo", "worker", "--study", "ghost", "--storage", storage], timeout=120
    )
    assert res.returncode == 2 and "no study named 'ghost'" in res.stderr


@pytest.mark.slow
def test_ledger_admits_one_trial_at_a_time_when_two_do_not_fit(tmp_path: Path) -> None:
    """A simulated card with room for both workers' CUDA contexts and ONE tiny trial (~0.3 GiB each with the
    allocator's 256 MiB floor)."""
    from hpo.memory.budget import CUDA_CONTEXT

    out, cfg = tmp_path / "runs", tmp_path / "one-at-a-time.yaml"
    card_mib = 2 * CUDA_CONTEXT // 2**20 + 450
    cfg.write_text(CONFIG.read_text() + f"gpu_memory: {card_mib}MiB\nheadroom_gb: 0.0\n")
    res = run_cli([*tune_cmd(out, "--par", "2", "--n-trials", "4", config=cfg), "--epochs", "2"], timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    trials = [t for t in load(out).trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(trials) >= 4 and not [t for t in load(out).trials if t.state == TrialState.FAIL]
    held = sorted((t.user_attrs["admitted_at"], t.user_attrs["released_at"]) for t in trials)
    assert all(end <= nxt for (_, end), (nxt, _) in itertools.pairwise(held)), held  # never together
    assert sum(t.user_attrs["admission_wait_s"] for t in trials) > 0.3  # one worker waited for the other
    ledger = json.loads((out / "hpo.ledger.json").read_text())
    assert [e["reservations"] + e["waiting"] for e in ledger.values()] == [[], []]  # the GPU, host RAM
    card = next(k for k in ledger if k.startswith("simulated-"))
    assert {t.user_attrs["gpu"] for t in trials if "admitted_at" in t.user_attrs} == {card}  # recorded
    assert (
        "| ledger 0.0/" in res.stdout and "0 admitted, 0 waiting" in res.stdout
    )  # the launcher's status  # trials and contexts released


@pytest.mark.slow
def test_host_memory_for_one_trial_at_a_time_runs_them_one_after_the_other(tmp_path: Path) -> None:
    """--host-memory with room for both workers' baselines and ONE tiny trial (95-115 MiB estimated each)."""
    from hpo.memory.host import PROCESS_BASELINE

    out = tmp_path / "runs"
    # capacity = host memory less a tenth: 2 baselines + 150 MiB
    host_mib = round((2 * PROCESS_BASELINE // 2**20 + 150) / 0.9)
    cmd = [*tune_cmd(out, "--par", "2", "--n-trials", "4"), "--host-memory", f"{host_mib}MiB"]
    res = run_cli(cmd, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    study = load(out)
    assert not [t for t in study.trials if t.state in (TrialState.FAIL, TrialState.RUNNING)]
    trials = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(trials) >= 4 and all(0.08 < t.user_attrs["estimated_host_gb"] < 0.13 for t in trials)
    held = sorted((t.user_attrs["admitted_at"], t.user_attrs["released_at"]) for t in trials)
    assert all(end <= nxt for (_, end), (nxt, _) in itertools.pairwise(held)), held  # never together
    assert sum(t.user_attrs["admission_wait_s"] for t in trials) > 0.3  # one worker waited for the other
    assert "host RAM 0.0/1.1 GB, 0 admitted, 0 waiting" in res.stdout
