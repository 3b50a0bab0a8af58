"""Storage outages (hpo.storage.retry): fake failures shaped as a PostgreSQL restart produces them, a fake
clock; the stale-RUNNING rule and the no-spin rule of the launcher (hpo.run.liveness)."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy.exc as sa_exc
from optuna.trial import FrozenTrial, TrialState

from hpo.config.study import StudyConfig, load_config
from hpo.errors import ConfigError, StorageDown
from hpo.run.liveness import UNOWNED_AFTER, SpinGuard, is_stale, open_slots, slots_left
from hpo.storage.retry import Outage, RetryingRDBStorage, is_transient
from hpo.trial import keys as K
from hpo.units import parse_duration


class DriverError(Exception):
    """A psycopg error: its message, and the SQLSTATE the server sent (None for a refused connection)."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def refused() -> Exception:
    """What every call raises while the server is down, as Optuna's RDBStorage raises it."""
    driver = DriverError(
        'connection failed: connection to server at "127.0.0.1", port 5 failed: Connection refused'
    )
    cause = sa_exc.OperationalError("SELECT 1", {}, driver)
    try:
        raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from cause
    except optuna.exceptions.StorageInternalError as exc:
        return exc


def admin_shutdown() -> Exception:
    """A statement in flight when `pg_ctl restart -m fast` terminates the backend."""
    driver = DriverError("terminating connection due to administrator command", "57P01")
    return sa_exc.OperationalError("SELECT 1", {}, driver, connection_invalidated=True)


class Clock:
    def __init__(self) -> None:
        self.now, self.sleeps = 0.0, list[float]()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def outage(limit_s: float = 60.0) -> tuple[Outage, Clock, list[str]]:
    clock, said = Clock(), list[str]()
    o = Outage(limit_s=limit_s, sleep=clock.sleep, clock=clock, say=said.append)
    return o, clock, said


def failing(n: int, make: Callable[[], Exception] = refused) -> Callable[[], str]:
    calls = [0]

    def fn() -> str:
        calls[0] += 1
        if calls[0] <= n:
            raise make()
        return "ok"

    return fn


@pytest.mark.parametrize("make", [refused, admin_shutdown])
def test_a_call_failing_n_times_succeeds_after_bounded_backoff(make: Callable[[], Exception]) -> None:
    o, clock, said = outage()
    assert o.call(failing(8, make), "get_all_trials") == "ok"
    assert len(clock.sleeps) == 8
    assert all(0 < s <= o.max_delay_s for s in clock.sleeps)  # bounded
    assert clock.sleeps[0] <= 1.5 * o.first_delay_s and max(clock.sleeps) > 4 * o.first_delay_s  # grows
    assert (
        said[0].startswith("[storage] get_all_trials unreachable (") and "retrying for up to 60s" in said[0]
    )
    assert said[-1].startswith("[storage] back after")
    assert o.down_since is None and o.recently_recovered(60.0)


def test_it_gives_up_with_the_error_after_the_configured_time_and_fails_fast_after() -> None:
    o, clock, _ = outage(limit_s=30.0)
    with pytest.raises(StorageDown) as err:
        o.call(failing(10**6), "set_trial_user_attr")
    assert 30.0 <= clock.now <= 30.0 + 1e-6  # waited exactly the limit, not one backoff more
    assert "unreachable for 30s" in err.value.message and "Connection refused" in err.value.message
    assert "--storage-retry" in (err.value.fix or "") and "rerun" in (err.value.fix or "")
    assert isinstance(err.value.__cause__, optuna.exceptions.StorageInternalError)
    before = clock.now
    with pytest.raises(StorageDown):
        o.call(failing(0))  # given up: every later call fails at once, nothing waits again
    assert clock.now == before


def test_the_limit_bounds_the_whole_outage_not_each_call() -> None:
    o, clock, _ = outage(limit_s=20.0)
    o.down_since = clock.now - 15.0  # another call (or thread) has waited 15 s already
    with pytest.raises(StorageDown):
        o.call(failing(10**6))
    assert clock.now == pytest.approx(5.0)


def test_errors_that_no_retry_can_fix_are_raised_at_once() -> None:
    o, clock, _ = outage()
    bad = sa_exc.OperationalError("INSERT", {}, sqlite3.OperationalError("no such table: trials"))
    full = sa_exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))
    for exc in (bad, full, ValueError("bad value"), OSError(errno.ENOSPC, "No space left on device")):
        with pytest.raises(type(exc)):
            o.call(failing(1, lambda exc=exc: exc))  # type: ignore[misc]
    assert clock.sleeps == []


def test_opening_a_storage_fails_at_once_unless_known_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from hpo.storage import retry as storage_retry

    o, clock, _ = outage()
    monkeypatch.setattr(storage_retry, "OUTAGE", o)
    connect = failing(2)  # the server refuses the first two connections
    monkeypatch.setattr(RetryingRDBStorage, "__init__", lambda self, *a, **k: connect() and None)
    with pytest.raises(optuna.exceptions.StorageInternalError):  # `hpo tune` with a server that is down
        storage_retry.open_rdb("postgresql://h/db")
    o.assume_up = True  # a worker of a running launcher: the storage worked a moment ago
    storage_retry.open_rdb("postgresql://h/db")  # refused once more, then it opens
    assert len(clock.sleeps) == 1


def test_transient_shapes() -> None:
    assert is_transient(refused()) and is_transient(admin_shutdown())
    starting = DriverError("FATAL:  the database system is starting up", "57P03")
    assert is_transient(sa_exc.OperationalError("x", {}, starting))
    locked = sa_exc.OperationalError("x", {}, sqlite3.OperationalError("database is locked"))
    assert is_transient(locked)
    assert not is_transient(sa_exc.IntegrityError("x", {}, DriverError("duplicate key", "23505")))
    assert not is_transient(KeyError("x"))


def test_every_storage_call_optuna_makes_goes_through_the_retry() -> None:
    # the methods Optuna's cache calls on its backend (optuna.storages._cached_storage) and the public ones
    for name in ("_get_trials", "_create_new_trial", "_set_trial_param", "_get_best_trial_id", "get_trial"):
        assert getattr(RetryingRDBStorage, name) is not getattr(optuna.storages.RDBStorage, name), name
    for name in ("set_trial_state_values", "record_heartbeat", "_get_stale_trial_ids"):
        assert name in RetryingRDBStorage.__dict__


def test_sqlite_storage_is_the_retrying_one(tmp_path: Path) -> None:
    from hpo.storage.study import make_storage

    storage = make_storage(f"sqlite:///{tmp_path / 'a.db'}")
    assert isinstance(storage, RetryingRDBStorage)
    study = optuna.create_study(storage=storage, study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(study.trials) == 2


def test_storage_retry_setting_and_durations(tmp_path: Path) -> None:
    assert parse_duration("30s") == 30 and parse_duration("10m") == 600 and parse_duration("1h") == 3600
    assert parse_duration("1h30m") == 5400 and parse_duration("90") == 90 and parse_duration(2.5) == 2.5
    for bad in ("ten", "", "10 minutes", "-5s"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert StudyConfig().storage_retry_s == 600
    cfg = load_config(None, {"storage_retry": "45s", "output_dir": tmp_path})
    assert cfg.storage_retry_s == 45
    with pytest.raises(ConfigError, match="--storage-retry"):
        load_config(None, {"storage_retry": "soon"}, flags={"storage_retry": "--storage-retry"})


def test_storage_retry_is_not_part_of_the_fingerprint() -> None:
    from hpo.config.fingerprint import SETTINGS

    assert not SETTINGS["storage_retry"].fingerprinted


# ---- the stale-RUNNING rule and the no-spin rule --------------------------------------------------------


def trial(number: int, state: TrialState, **attrs: Any) -> FrozenTrial:
    return FrozenTrial(
        number=number,
        state=state,
        value=0.5 if state == TrialState.COMPLETE else None,
        values=None,
        datetime_start=datetime.now(),
        datetime_complete=None if state == TrialState.RUNNING else datetime.now(),
        params={},
        distributions={},
        user_attrs=attrs,
        system_attrs={},
        intermediate_values={},
        trial_id=number,
    )


def alive(pid: int) -> bool:
    return pid in (100, 101)


def test_a_running_trial_whose_process_is_gone_is_stale() -> None:
    assert is_stale(trial(0, TrialState.RUNNING, host="h", pid=999), "h", alive)
    assert not is_stale(trial(0, TrialState.RUNNING, host="h", pid=100), "h", alive)
    assert not is_stale(trial(0, TrialState.RUNNING, host="other", pid=999), "h", alive)  # heartbeats decide
    assert not is_stale(trial(0, TrialState.RUNNING), "h", alive)  # just created: no process recorded yet
    assert not is_stale(trial(0, TrialState.COMPLETE, host="h", pid=999), "h", alive)


def test_a_running_trial_that_never_recorded_a_process_is_stale_after_ten_minutes() -> None:
    unowned = trial(0, TrialState.RUNNING)
    start = unowned.datetime_start
    assert start is not None
    assert not is_stale(unowned, "h", alive, now=start + UNOWNED_AFTER)  # it may still be starting
    assert is_stale(unowned, "h", alive, now=start + UNOWNED_AFTER + timedelta(seconds=1))
    assert is_stale(trial(0, TrialState.RUNNING, host="h"), "h", alive, now=start + timedelta(hours=1))


def test_a_stale_running_trial_never_counts_towards_the_target() -> None:
    # the chaos run: 5 of 6 finished, the 6th RUNNING with its worker dead -> one trial still to run
    done = [trial(i, TrialState.COMPLETE) for i in range(4)] + [trial(4, TrialState.PRUNED)]
    stale = trial(5, TrialState.RUNNING, host="h", pid=999)
    assert open_slots([*done, stale], 6, "h", alive) == 1
    live = trial(5, TrialState.RUNNING, host="h", pid=100)
    assert open_slots([*done, live], 6, "h", alive) == 0
    other_host = trial(5, TrialState.RUNNING, host="b", pid=999)
    assert open_slots([*done, other_host], 6, "h", alive) == 0
    failed = trial(6, TrialState.FAIL, host="h", pid=100)
    assert open_slots([*done, failed], 6, "h", alive) == 1
    assert open_slots([*done, live, trial(7, TrialState.COMPLETE)], 6, "h", alive) == 0  # never negative


def test_slots_left_reads_the_study(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s")
    study.optimize(lambda t: 1.0, n_trials=2)
    dead = study.ask()
    dead.set_user_attr(K.HOST, __import__("socket").gethostname())
    dead.set_user_attr(K.PID, 2**22 + 12345)  # above pid_max: no such process
    assert slots_left(study, 3) == 1
    study.ask()  # RUNNING, no process recorded yet: counts (it may be starting)
    assert slots_left(study, 3) == 0


def test_a_generation_of_workers_exiting_without_a_trial_stops_the_launcher() -> None:
    guard = SpinGuard(par=2)
    assert not guard.exited(ran_trial=False)
    assert not guard.exited(ran_trial=True)  # a worker that ran a trial resets the count
    assert not guard.exited(ran_trial=False)
    assert guard.exited(ran_trial=False)  # two in a row: the whole generation
    message = guard.message(5, 6, [5])
    assert "2 workers in a row exited without running a trial" in message and "5/6" in message
    assert "RUNNING: 5" in message and "rerun" in message
    assert SpinGuard(par=1).limit == 2 and SpinGuard(par=4).limit == 4
