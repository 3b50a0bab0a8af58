"""Workers die with their launcher (SIGTERM, SIGKILL) and sample distinct configs (real processes)."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from tests.integration.test_launcher import load, run_until_a_trial_runs, tune_cmd
from tests.support import CI_CONFIG, hpo_cmd, quiet_env, run_cli, wait_for


def workers_of(out: Path) -> list[psutil.Process]:
    """Live `hpo worker` processes of the study under ``out`` (their config file lives there)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        if "worker" in cmd and any(str(out) in part for part in cmd) and p.info["status"] != "zombie":
            found.append(p)
    return found


def _stop_launcher_and_check(tmp_path: Path, sig: signal.Signals) -> tuple[int, str, Path]:
    out = tmp_path / "runs"
    seen: list[int] = []

    def stop(proc: subprocess.Popen[str]) -> None:
        assert wait_for(lambda: len(workers_of(out)) == 2, 60), "two workers did not start"
        seen.extend(p.pid for p in workers_of(out))
        proc.send_signal(sig)
        assert wait_for(lambda: not workers_of(out), 15), f"workers alive 15 s after {sig.name}"

    returncode, stdout = run_until_a_trial_runs(out, 6, stop, timeout=60)
    assert len(seen) == 2
    return returncode, stdout, out


def _resume_leaves_nothing_running(out: Path) -> None:
    res = run_cli(tune_cmd(out, "--n-trials", "1", "--allow-changes"), timeout=600)  # 3 epochs -> 1
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert not [t for t in load(out).trials if t.state == TrialState.RUNNING]


@pytest.mark.slow
def test_sigterm_stops_the_workers_fails_their_trials_and_exits_143(tmp_path: Path) -> None:
    returncode, stdout, out = _stop_launcher_and_check(tmp_path, signal.SIGTERM)
    assert returncode == 143, stdout[-3000:]
    assert "stopped by SIGTERM: stopping workers" in stdout
    trials = load(out).trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and all("SIGTERM" in t.user_attrs.get("error", "") for t in failed), [
        t.user_attrs for t in failed
    ]
    _resume_leaves_nothing_running(out)


@pytest.mark.slow
def test_sigkill_of_the_launcher_takes_its_workers_down(tmp_path: Path) -> None:
    returncode, _, out = _stop_launcher_and_check(tmp_path, signal.SIGKILL)
    assert returncode == -signal.SIGKILL
    trials = load(out).trials
    # each worker failed its own trial on the way out, naming why
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and all("launcher" in t.user_attrs.get("error", "") for t in failed), [
        t.user_attrs for t in failed
    ]
    _resume_leaves_nothing_running(out)


def test_two_workers_with_one_seed_propose_different_configs(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    cmd = hpo_cmd("tune", "--config", str(CI_CONFIG), "--output-dir", str(out), "--epochs", "1")
    res = run_cli([*cmd, "--par", "2", "--n-trials", "2"], timeout=600)  # with MLflow
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    # the launcher creates the MLflow db first: no worker dies racing to create its schema
    assert "died" not in res.stdout + res.stderr
    client = MlflowClient(tracking_uri=f"sqlite:///{(out / 'mlflow.db').resolve()}")
    runs = client.search_runs([client.get_experiment_by_name("ci-tiny").experiment_id])
    assert len([r for r in runs if r.data.tags.get("hpo.parent") == "true"]) == 1
    trials = load(out).trials
    assert len(trials) >= 2
    configs = [json.dumps(t.params, sort_keys=True) for t in trials]
    assert len(set(configs)) == len(configs), configs
    workers = {t.user_attrs["worker"] for t in trials}
    assert {"w0.0", "w1.0"} <= workers
    assert len({t.user_attrs["sampler_seed"] for t in trials}) >= 2


@pytest.mark.slow
def test_a_config_that_kills_its_worker_runs_at_most_twice_and_the_breaker_stops(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    res = run_cli(tune_cmd(out, "--n-trials", "2"), timeout=600)  # two healthy trials first
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    kept = {t.number: (t.state, t.value) for t in load(out).trials}
    killer = dict(load(out).trials[0].params)
    for _ in range(3):  # the same config three times in a row
        load(out).enqueue_trial(killer, skip_if_exists=False)
    env = quiet_env() | {"HPO_INJECT_KILL": "epoch=0,step=1"}  # every trial's worker is SIGKILLed
    cmd = tune_cmd(out, "--par", "2", "--n-trials", "12")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    output = res.stdout + res.stderr
    assert res.returncode == 4, output[-3000:]
    assert output.count("worker deaths in a row") == 1, output[-3000:]
    assert "killed their worker twice" in output  # the closing counts
    trials = load(out).trials
    assert {t.number: (t.state, t.value) for t in trials if t.number in kept} == kept  # intact
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    same = [t for t in trials if t.number not in kept and t.params == killer]
    ran = [t for t in same if t.state == TrialState.FAIL]
    assert len(ran) == 2, [(t.number, t.state, t.user_attrs) for t in same]
    for t in ran:
        death = t.user_attrs["worker_death"]
        assert death["signal"] == "SIGKILL" and death["phase"].startswith("training epoch 1/1")
        assert death["host_ram_available_gb"] > 0 and "OOM killer" in death["likely_cause"]
    skipped = [t for t in same if t.state == TrialState.PRUNED]
    assert skipped and all(t.user_attrs["pruned_reason"] == "worker_deaths" for t in skipped)


def _has_trials(out: Path) -> bool:
    try:
        return bool(load(out).trials)
    except Exception:  # the storage or the study does not exist yet
        return False


def test_sigterm_stops_a_serial_run_like_ctrl_c(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    proc = subprocess.Popen(
        [*tune_cmd(out, "--n-trials", "3"), "--epochs", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=quiet_env(),
    )
    try:
        assert wait_for(lambda: _has_trials(out), 120), "no trial started"
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stdout[-3000:]
    trials = load(out).trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert all(t.user_attrs.get("error") == "interrupted: stopped by SIGTERM" for t in failed), failed
