"""A worker frozen (SIGSTOP) past the heartbeat grace: its trial is failed and retried by the others; when it
wakes (SIGCONT) it abandons that trial quietly and goes on (real processes, one SQLite storage)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from optuna.trial import TrialState

from hpo.run.protocol import read_marker
from tests.integration.test_launcher import load, tune_cmd
from tests.support import quiet_env, wait_for

GRACE_S = 4  # the heartbeat grace the test runs under (hpo.storage.rdb.heartbeat_settings)


def training_worker(out: Path) -> tuple[int, int] | None:
    """(pid, trial) of a worker in its trial's first training epoch, from the launcher's marker files."""
    for path in (out / "workers" / "ci-tiny").glob("*.trial"):
        marker = read_marker(path)
        if marker is not None and marker[1].startswith("training epoch 1/"):
            return int(path.stem), marker[0]
    return None


def state_of(out: Path, number: int) -> TrialState:
    return load(out).trials[number].state


@pytest.mark.slow
def test_a_worker_frozen_past_the_heartbeat_grace_abandons_its_trial_and_goes_on(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    env = {**quiet_env(), "HPO_HEARTBEAT_INTERVAL_S": "1", "HPO_HEARTBEAT_GRACE_S": str(GRACE_S)}
    cmd = [*tune_cmd(out, "--par", "2", "--n-trials", "6"), "--epochs", "3"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert wait_for(lambda: training_worker(out) is not None, 180), "no worker started training"
        found = training_worker(out)
        assert found is not None
        pid, number = found
        os.kill(pid, signal.SIGSTOP)
        try:  # the other worker's next trial start fails the stale trial (Optuna's heartbeat check)
            assert wait_for(lambda: state_of(out, number) == TrialState.FAIL, 300), "trial not failed"
        finally:
            os.kill(pid, signal.SIGCONT)
        stdout, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stdout[-4000:]
    assert "Traceback" not in stdout and "Cannot tell" not in stdout, stdout[-4000:]
    assert "died with exit code" not in stdout and "0 replaced after a crash" in stdout, stdout[-4000:]
    said = [line for line in stdout.splitlines() if f"trial {number} was finished" in line]
    assert len(said) == 1 and "abandoned" in said[0], stdout[-4000:]
    trials = load(out).trials
    frozen = trials[number]
    assert frozen.state == TrialState.FAIL and frozen.values is None
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) >= 6
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == number]
    assert retried and retried[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
