"""A PostgreSQL restart (`pg_ctl restart -m fast`) or outage during a `--par 2` study (real server).

Each run must end by itself within a bounded time (never loop), either finished or stopped with one `error:`
line and the documented exit code; afterwards nothing is RUNNING and a rerun of the same command reaches the
target. The server comes from tests/postgres.py; HPO_TEST_POSTGRES_DIR lets the test restart it.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo.commands.exit_codes import STORAGE_DOWN
from tests.postgres import server_dir
from tests.support import CI_CONFIG, REPO, hpo_cmd, quiet_env

pytestmark = pytest.mark.slow

N_TRIALS = 4
WALL_S = 420  # a launcher still running after this long loops: killed and failed
PG_SCRIPT = REPO / "scripts" / "pg_server.sh"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _pg(command: str) -> None:
    subprocess.run(["bash", str(PG_SCRIPT), command, server_dir()], check=True, timeout=120)


def _tune(out: Path, storage: str, *extra: str) -> subprocess.Popen[str]:
    cmd = hpo_cmd(
        "tune", "--config", str(CI_CONFIG), "--output-dir", str(out), "--no-mlflow", "--no-report",
        "--par", "2", "--n-trials", str(N_TRIALS), *extra,
    )  # fmt: skip
    env = quiet_env() | {"OPTUNA_STORAGE": storage}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _end(proc: subprocess.Popen[str], started: float) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=max(1.0, WALL_S - (time.monotonic() - started)))
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"the launcher never ended ({WALL_S}s): {out[-3000:]}")
    return proc.returncode, out


class Watch:
    """The study's trials as the test sees them (reads that fail while the server is down return [])."""

    def __init__(self, url: str) -> None:
        self.storage = optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})

    def trials(self) -> list[optuna.trial.FrozenTrial]:
        try:
            return optuna.load_study(study_name="ci-tiny", storage=self.storage).get_trials(deepcopy=False)
        except Exception:
            return []

    def until(self, predicate: object, proc: subprocess.Popen[str], timeout: float = 300) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if predicate(self.trials()):  # type: ignore[operator]
                return True
            time.sleep(0.1)
        return False


def _training(trials: list[optuna.trial.FrozenTrial]) -> bool:
    """Both workers inside a trial: sized and started (its config recorded), so training is under way."""
    return len([t for t in trials if t.state == TrialState.RUNNING and "trial_config" in t.user_attrs]) >= 2


def _check_end(rc: int, out: str) -> None:
    """Finished, or stopped with the storage exit code and one `error:` line; never a traceback."""
    assert rc in (0, STORAGE_DOWN), f"exit {rc}: {out[-4000:]}"
    assert "Traceback" not in out, out[-4000:]
    if rc == STORAGE_DOWN:
        errors = [line for line in out.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "storage" in errors[0], out[-3000:]


def _resumes(tmp_path: Path, url: str) -> None:
    """A rerun of the same command reaches the target; nothing is left RUNNING."""
    rerun = _tune(tmp_path / "out", url)
    rc, out = _end(rerun, time.monotonic())
    assert rc == 0, out[-4000:]
    trials = Watch(url).trials()
    assert len([t for t in trials if t.state in FINISHED]) >= N_TRIALS, [t.state for t in trials]
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]


def test_restart_while_both_workers_train(tmp_path: Path, pg_url: str) -> None:
    started = time.monotonic()
    proc, watch = _tune(tmp_path / "out", pg_url), Watch(pg_url)
    try:
        assert watch.until(_training, proc), "the workers never trained side by side"
        time.sleep(1.0)
        _pg("restart")
    finally:
        rc, out = _end(proc, started)
    _check_end(rc, out)
    _resumes(tmp_path, pg_url)


def test_restarts_as_trials_end(tmp_path: Path, pg_url: str) -> None:
    """Restarts right as the first and the second trial finish: a worker is between trials (telling,
    asking, sampling) while the other trains."""
    started = time.monotonic()
    proc, watch = _tune(tmp_path / "out", pg_url), Watch(pg_url)
    try:
        for n in (1, 2):
            if watch.until(lambda ts, n=n: len([t for t in ts if t.state in FINISHED]) >= n, proc):
                _pg("restart")
    finally:
        rc, out = _end(proc, started)
    _check_end(rc, out)
    _resumes(tmp_path, pg_url)


def test_outage_longer_than_storage_retry_stops_cleanly_and_resumes(tmp_path: Path, pg_url: str) -> None:
    started = time.monotonic()
    proc, watch = _tune(tmp_path / "out", pg_url, "--storage-retry", "5s"), Watch(pg_url)
    try:
        assert watch.until(_training, proc), "the workers never trained side by side"
        _pg("stop")
        deadline = time.monotonic() + 90  # the run gives up after 5 s of failed storage calls
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        _pg("restart")  # starts the stopped server again (same data dir and port)
        rc, out = _end(proc, started)
    assert rc == STORAGE_DOWN, f"exit {rc}: {out[-4000:]}"
    _check_end(rc, out)
    assert "--storage-retry" in out
    _resumes(tmp_path, pg_url)
