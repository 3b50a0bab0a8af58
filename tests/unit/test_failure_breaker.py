"""Trials failing the same way again and again stop the run with an HpoError (serial and the launcher)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from hpo.device.faults import FaultInjector, FaultPlan
from hpo.errors import HpoError, RepeatedFailureError
from hpo.run.deaths import FailureStreak, repeated_failures, signature
from hpo.run.serial import MAX_CONSECUTIVE_FAILURES, run_trials
from hpo.trial import keys as K


@dataclass
class _Progress:
    lines: list[tuple[int, str, str]] = field(default_factory=list)

    def trial_finished(self, number: int, state: str, value: Any, note: str) -> None:
        self.lines.append((number, state, note))

    def study(self, state: Any) -> None:
        """The overall line (hpo.progress.Progress.study): nothing to show here."""


@dataclass
class _Objective:
    """Stands in for hpo.trial.objective.Objective: raises ``errors[i]`` in the i-th trial (None: 0.5)."""

    errors: list[Exception | None]
    record: bool = False  # write the error attr as hpo.trial.outcomes.failed does
    progress: _Progress = field(default_factory=_Progress)
    last_number: int = -1
    poisoned: bool = False
    disk_full: bool = False

    def __call__(self, trial: optuna.Trial) -> float:
        self.last_number = trial.number
        exc = self.errors[trial.number % len(self.errors)]
        if exc is None:
            return 0.5
        if self.record:
            trial.set_user_attr(K.ERROR, f"{type(exc).__name__}: {exc}")
        raise exc


def study() -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.create_study(storage=optuna.storages.InMemoryStorage())


def test_signature_ignores_numbers_and_later_lines() -> None:
    assert signature("RuntimeError: bad at trial 3\ntrace") == signature("RuntimeError: bad at trial 41")
    assert signature("RuntimeError: bad") != signature("ValueError: bad")


def test_streak_trips_on_the_same_error_and_resets_on_a_finished_trial() -> None:
    s = FailureStreak(limit=3)
    assert not s.add(True, "RuntimeError: x 1") and not s.add(True, "RuntimeError: x 2")
    assert not s.add(False)  # a finished trial resets the count
    assert not s.add(True, "RuntimeError: x") and not s.add(True, "ValueError: y 5")
    assert not s.add(True, "ValueError: y 6") and s.add(True, "ValueError: y 7")
    err = s.error()
    assert isinstance(err, HpoError) and "3 trials failed with the same error" in err.message
    assert "ValueError: y 7" in err.message and err.fix and "rerun" in err.fix


def test_streak_of_different_errors_trips_at_twice_the_limit() -> None:
    s = FailureStreak(limit=2)
    assert [s.add(True, f"E{i}: x") for i in "abcd"] == [False, False, False, True]
    assert "different errors" in s.error().message


def test_serial_run_stops_with_an_error_recorded_on_each_fail_trial() -> None:
    st = study()
    obj = _Objective([RuntimeError("boom at step 0")])  # raised before any outcome was recorded
    with pytest.raises(RepeatedFailureError) as err:
        run_trials(st, obj, target=50, timeout=None)  # type: ignore[arg-type]
    assert "RuntimeError: boom at step 0" in err.value.message
    trials = st.get_trials()
    assert len(trials) == MAX_CONSECUTIVE_FAILURES
    assert all(t.state == TrialState.FAIL for t in trials)
    assert all(t.user_attrs[K.ERROR] == "RuntimeError: boom at step 0" for t in trials)


def test_serial_run_keeps_an_error_the_trial_recorded_itself() -> None:
    st = study()
    obj = _Objective([ValueError("own")], record=True)
    with pytest.raises(RepeatedFailureError):
        run_trials(st, obj, target=50, timeout=None)  # type: ignore[arg-type]
    assert {t.user_attrs[K.ERROR] for t in st.get_trials()} == {"ValueError: own"}


def test_serial_run_with_failures_between_successes_reaches_its_target() -> None:
    st = study()
    obj = _Objective([RuntimeError("flaky"), None])
    assert run_trials(st, obj, target=4, timeout=None) == "target reached"  # type: ignore[arg-type]
    assert len(st.get_trials(states=(TrialState.COMPLETE,))) == 4


def _finish(
    st: optuna.Study, state: TrialState, error: str = "", attrs: dict[str, Any] | None = None
) -> None:
    trial = st.ask()
    for key, value in (attrs or {}).items():
        trial.set_user_attr(key, value)
    if error:
        trial.set_user_attr(K.ERROR, error)
    st.tell(trial, 0.5 if state == TrialState.COMPLETE else None, state=state)


def test_launcher_sees_the_same_failure_across_workers() -> None:
    st = study()
    since = datetime.now() - timedelta(seconds=1)
    _finish(st, TrialState.COMPLETE)
    for i in range(4):
        _finish(st, TrialState.FAIL, f"RuntimeError: broken (worker {i % 2})")
    assert repeated_failures(st, since, 5) is None
    _finish(st, TrialState.FAIL, "worker process died", {K.WORKER_DEATH: {"exit_code": -9}})  # not counted
    assert repeated_failures(st, since, 5) is None
    _finish(st, TrialState.FAIL, "RuntimeError: broken (worker 0)")
    err = repeated_failures(st, since, 5)
    assert err is not None and "5 trials failed with the same error" in err.message


def test_launcher_counts_only_trials_that_failed_since_it_started() -> None:
    st = study()
    for _ in range(6):
        _finish(st, TrialState.FAIL, "RuntimeError: from an earlier run")
    assert repeated_failures(st, datetime.now() + timedelta(seconds=1), 5) is None


def test_inject_error_fires_a_plain_runtime_error_in_every_trial() -> None:
    plan = FaultPlan.from_env({"HPO_INJECT_ERROR": "epoch=0,step=1"})
    assert plan is not None
    for trial in (0, 7):
        inj = FaultInjector(plan, trial)
        inj.check(0, 0)
        with pytest.raises(RuntimeError, match="injected error") as err:
            inj.check(0, 1)
        assert "CUDA" not in str(err.value) and "memory" not in str(err.value)
