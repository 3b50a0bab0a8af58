"""A stop signal that lands while Optuna creates or tells a trial waits for the objective: the trial ends
FAIL with the reason, never RUNNING with no process recorded (which nothing could clean up later)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo.config.study import load_config
from hpo.lifecycle import STOP_SIGNALS, Stopped, check_stop, stop_on_signals, stops_held, stops_released
from hpo.progress import Progress
from hpo.run.bootstrap import start_study
from hpo.run.serial import run_one
from hpo.run.setup import build_objective, prepare
from tests.support import CI_CONFIG

WHY = "launcher (pid 1) died"


@pytest.fixture
def stops() -> Iterator[None]:
    """This process stops on signals for the test (with the worker's reason), as before afterwards."""
    saved = {sig: signal.getsignal(sig) for sig in (*STOP_SIGNALS, signal.SIGALRM)}
    assert stop_on_signals(lambda signum: WHY)
    yield
    stop_on_signals()  # nothing pending for the next test
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_held_stop_raises_at_the_next_check_or_when_the_block_ends(stops: None) -> None:
    with pytest.raises(Stopped, match="launcher"), stops_held():
        os.kill(os.getpid(), signal.SIGTERM)  # held: the next line runs
        reached = True
    assert reached
    stop_on_signals(lambda signum: WHY)
    with pytest.raises(Stopped), stops_held():  # a stop stays pending: the block's end raises it again
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(Stopped, match="launcher"):
            check_stop()  # the next check (the objective's first) raises it


def test_a_pending_stop_raises_before_a_held_block_starts(stops: None) -> None:
    """A stop swallowed by a finalizer (during setup) must not let the worker create a trial first: the
    stop deadline (SIGALRM) could end the process between Optuna's ask and the trial's first record."""
    with contextlib.suppress(Stopped):  # as a weakref callback swallows it
        os.kill(os.getpid(), signal.SIGTERM)
    ran = []
    with pytest.raises(Stopped, match="launcher"), stops_held():
        ran.append(True)
    assert not ran


def test_a_stop_inside_a_released_block_raises_where_it_lands(stops: None) -> None:
    with pytest.raises(Stopped), stops_held(), stops_released():
        os.kill(os.getpid(), signal.SIGTERM)
        pytest.fail("not reached: the stop raised at the kill")


def test_a_stop_while_optuna_creates_the_trial_fails_it_with_the_reason(tmp_path: Path, stops: None) -> None:
    cfg = load_config(CI_CONFIG, {"output_dir": tmp_path / "runs", "mlflow": False, "n_trials": 2})
    setup = prepare(cfg)
    study, tracker = start_study(cfg, setup)
    started: list[int] = []
    progress = Progress(io.StringIO(), live=False)
    objective = build_objective(
        cfg, progress, setup=setup, tracker=tracker, on_start=lambda t: started.append(t.number)
    )
    before_trial = study.sampler.before_trial

    def interrupted(study_: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # the launcher dies: the trial's row exists, nothing else yet
        before_trial(study_, trial)

    study.sampler.before_trial = interrupted  # type: ignore[method-assign]
    with pytest.raises(Stopped, match="launcher"):
        run_one(study, objective)
    (trial,) = study.get_trials()
    assert trial.state == TrialState.FAIL, trial  # before: RUNNING, params {} and user attrs {}
    assert trial.user_attrs["error"] == f"interrupted: {WHY}"
    assert started == [trial.number]  # its process was recorded before the stop took effect
