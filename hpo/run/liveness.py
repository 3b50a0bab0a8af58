"""Which RUNNING trials still have a process behind them, and when a launcher would spin.

A trial records its process (host and pid) as its first act (the worker's ``on_start``, then
``hpo.trial.outcomes.started``). A RUNNING trial whose process on this host is gone is *stale*: it never
counts towards the target (:func:`open_slots`), and the launcher fails it (it keeps which worker ran which
trial), as does the next start (``hpo.run.bootstrap``). So is one that has recorded no process 10 minutes
after its creation (a process killed while Optuna created it: SIGKILL, or past its stop deadline). A RUNNING
trial of another host is live until its heartbeat goes stale (Optuna fails it then).

:class:`SpinGuard`: a launcher whose workers keep exiting without running a trial (they see the target
reached, the launcher does not) would start workers forever; a whole generation of them (PAR in a row) stops
the run with a message instead.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import optuna
import psutil
from optuna.trial import FrozenTrial, TrialState

from hpo.storage.study import FINISHED_STATES
from hpo.trial import keys as K

HOST = socket.gethostname()
# a trial records its process within moments of its creation (hpo.lifecycle.stops_held keeps a stop from
# cutting in between); one still without a process after this was left by a process killed in between
UNOWNED_AFTER = timedelta(minutes=10)


def is_stale(
    trial: FrozenTrial,
    host: str = HOST,
    alive: Callable[[int], bool] = psutil.pid_exists,
    now: datetime | None = None,
) -> bool:
    """A RUNNING trial whose process ran on ``host`` and is gone, or one that never recorded a process in
    :data:`UNOWNED_AFTER` (its process died while Optuna created it). One just created, or one of another
    host, is not: its heartbeat decides."""
    if trial.state != TrialState.RUNNING:
        return False
    pid = trial.user_attrs.get(K.PID)
    if not isinstance(pid, int):
        started = trial.datetime_start
        return started is not None and (now or datetime.now()) - started > UNOWNED_AFTER
    return trial.user_attrs.get(K.HOST) == host and not alive(pid)


def open_slots(
    trials: Iterable[FrozenTrial],
    target: int,
    host: str = HOST,
    alive: Callable[[int], bool] = psutil.pid_exists,
) -> int:
    """Trials still to start for ``target``: target - finished - live RUNNING (stale RUNNING trials, whose
    process is gone, do not count: someone fails them; FAIL trials never count)."""
    finished = live = 0
    for t in trials:
        if t.state in FINISHED_STATES:
            finished += 1
        elif t.state == TrialState.RUNNING and not is_stale(t, host, alive):
            live += 1
    return max(0, target - finished - live)


def slots_left(study: optuna.Study, target: int) -> int:
    """:func:`open_slots` of ``study`` now (one read of the storage)."""
    states = (*FINISHED_STATES, TrialState.RUNNING)
    return open_slots(study.get_trials(deepcopy=False, states=states), target)


def trials_of(trials: Iterable[FrozenTrial], pid: int, host: str = HOST) -> list[FrozenTrial]:
    """The trials process ``pid`` of ``host`` started (any state)."""
    return [t for t in trials if t.user_attrs.get(K.PID) == pid and t.user_attrs.get(K.HOST) == host]


@dataclass
class SpinGuard:
    """Counts workers in a row that exited without running a trial; trips after a generation of them."""

    par: int
    idle: int = 0

    @property
    def limit(self) -> int:
        return max(2, self.par)

    def exited(self, ran_trial: bool) -> bool:
        """Record one worker's exit (``ran_trial``: it started at least one trial); True when it trips."""
        self.idle = 0 if ran_trial else self.idle + 1
        return self.idle >= self.limit

    def message(self, finished: int, target: int, running: list[int]) -> str:
        """The line the launcher stops with."""
        held = f"; RUNNING: {', '.join(map(str, running))}" if running else ""
        return (
            f"stopped: {self.idle} workers in a row exited without running a trial while the study has "
            f"{finished}/{target} finished trials{held}. A RUNNING trial with no live process blocks the "
            "target: the next `hpo tune` start fails trials whose process is gone; rerun the same command "
            "to resume"
        )
