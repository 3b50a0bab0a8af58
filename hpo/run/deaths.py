"""Worker deaths as evidence, and the crash-loop breaker of the launcher.

When a worker process dies, the launcher records how on its trial (:func:`evidence`: exit code or signal,
host RAM in use and available at that moment, the phase the worker was in, the likely cause). The
:class:`CrashLoop` breaker stops the launcher after K deaths in a row without a trial finishing in between,
so a config that kills every worker (the host runs out of RAM) cannot loop forever. The
:class:`FailureStreak` breaker stops a run (serial or the launcher) when trials keep failing the same way (a
bug, a broken derived file): FAIL trials do not count towards the target, so the run would never end.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import optuna
import psutil

from hpo.errors import RepeatedFailureError
from hpo.storage.study import FINISHED_STATES
from hpo.trial import keys as K
from hpo.units import GIB

LOW_RAM_FRACTION = 0.1  # available below 10 % of the host's RAM when a worker was SIGKILLed: out of memory


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def likely_cause(returncode: int, available: int, total: int) -> str:
    """A one-line guess at why a worker with ``returncode`` died (``available``/``total`` host RAM bytes)."""
    if returncode == -signal.SIGKILL:
        if total and available < LOW_RAM_FRACTION * total:
            return "killed by SIGKILL with the host nearly out of RAM: the kernel's OOM killer"
        return "killed by SIGKILL: the kernel's OOM killer (host RAM) or another process"
    if returncode < 0:
        return f"killed by {_signal_name(-returncode)}"
    return f"exited with code {returncode}"


def evidence(returncode: int, phase: str, worker: str) -> dict[str, Any]:
    """How a worker died, for its trial's ``worker_death`` user attr."""
    mem = psutil.virtual_memory()
    used, available, total = int(mem.total - mem.available), int(mem.available), int(mem.total)
    return {
        "exit_code": returncode,
        "signal": _signal_name(-returncode) if returncode < 0 else None,
        "host_ram_used_gb": round(used / GIB, 2),
        "host_ram_available_gb": round(available / GIB, 2),
        "host_ram_total_gb": round(total / GIB, 2),
        "phase": phase,
        "worker": worker,
        "likely_cause": likely_cause(returncode, available, total),
    }


def ran_count(study: optuna.Study) -> int:
    """Finished trials that ran (a config pruned for killing its worker twice does not count)."""
    trials = study.get_trials(deepcopy=False, states=FINISHED_STATES)
    return len([t for t in trials if t.user_attrs.get(K.PRUNED_REASON) != K.REASON_WORKER_DEATHS])


@dataclass
class CrashLoop:
    """Counts worker deaths in a row; trips after ``limit`` of them without a trial finishing in between."""

    limit: int = 3
    deaths: int = 0
    finished: int = -1  # trials finished when the last death was counted
    last: dict[str, Any] = field(default_factory=dict)  # the last death's evidence (and its config)

    def trial_finished(self, finished: int) -> None:
        """``finished``: trials of the study that ran to an end so far (one more resets the count)."""
        if finished > self.finished >= 0:
            self.deaths = 0
        self.finished = finished

    def died(self, finished: int, death: dict[str, Any]) -> bool:
        """Record a death; True when the breaker trips."""
        self.trial_finished(finished)
        self.deaths += 1
        self.last = death
        return self.deaths >= self.limit

    def message(self) -> str:
        """The one line the launcher stops with: how many deaths, the config, the likely cause."""
        d = self.last
        config: dict[str, Any] = d["config"] if isinstance(d.get("config"), dict) else {}
        shown = ", ".join(f"{k}={v}" for k, v in config.items() if k in _SHOWN)
        return (
            f"stopped: {self.deaths} worker deaths in a row without a finished trial (last: trial "
            f"{d.get('trial', '?')}, {shown or 'config unknown'}, in phase '{d.get('phase', 'unknown')}'); "
            f"likely cause: {d.get('likely_cause', 'unknown')}, host RAM "
            f"{d.get('host_ram_used_gb', '?')} GB used, {d.get('host_ram_available_gb', '?')} GB available. "
            "Lower --par, narrow the search space (batch size, max length, models) or free host memory; "
            "the study is intact: rerun to resume"
        )


_SHOWN = (
    "model",
    "batch_size",
    "grad_accum",
    "max_length",
    "precision",
    "grad_checkpointing",
    "learning_rate",
)


def last_error(study: optuna.Study) -> str:
    """The first line of the newest failed trial's recorded error ("" if none or the storage cannot say)."""
    try:
        failed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
    except Exception:  # the storage may be on the full disk: the caller has a fallback
        return ""
    for trial in sorted(failed, key=lambda t: t.number, reverse=True):
        error = str(trial.user_attrs.get(K.ERROR, "")).strip()
        if error:
            return error.splitlines()[0][:200]
    return ""


def signature(error: str) -> str:
    """What makes two trial errors "the same": the first line with its numbers blanked (trial numbers, sizes
    and step counts differ between trials that fail for one reason)."""
    first = error.strip().splitlines()[0] if error.strip() else "unknown error"
    return re.sub(r"\d+", "#", first)[:200]


@dataclass
class FailureStreak:
    """Counts FAIL trials in a row; trips after ``limit`` of them with the same error, or after twice that
    many with any errors (a FAIL trial never counts towards the target: the run would go on forever)."""

    limit: int = 5
    failed: int = 0  # FAIL trials in a row
    same: int = 0  # of those, the last ones with the last one's error
    last: str = ""  # the last FAIL trial's error (first line)

    def add(self, failed: bool, error: str = "") -> bool:
        """Count one finished trial (``failed``: it FAILed with ``error``); True when the breaker trips."""
        if not failed:
            self.failed = self.same = 0
            return False
        error = (error.strip().splitlines() or ["unknown error"])[0][:300]
        self.same = self.same + 1 if self.failed and signature(error) == signature(self.last) else 1
        self.failed, self.last = self.failed + 1, error
        return self.tripped

    @property
    def tripped(self) -> bool:
        return self.same >= self.limit or self.failed >= 2 * self.limit

    def error(self) -> RepeatedFailureError:
        """The one line the run stops with (the CLI prints it and exits 2)."""
        how = "with the same error" if self.same >= self.limit else "in a row (different errors)"
        n = self.same if self.same >= self.limit else self.failed
        return RepeatedFailureError(
            f"stopped: {n} trials failed {how}; last: {self.last}",
            "fix the cause of that error (each FAIL trial records it: hpo trials) and rerun the same "
            "command to resume; finished trials are kept",
        )


def repeated_failures(study: optuna.Study, since: datetime, limit: int) -> RepeatedFailureError | None:
    """The error to stop the launcher with when the trials that finished since ``since`` (in the order they
    finished, across all workers) end in a streak that trips :class:`FailureStreak`; else None. Trials failed
    for a worker's death are the crash-loop breaker's (and are retried): they neither count nor reset."""
    states = (*FINISHED_STATES, optuna.trial.TrialState.FAIL)
    trials = [
        t
        for t in study.get_trials(deepcopy=False, states=states)
        if t.datetime_complete is not None
        and t.datetime_complete >= since
        and K.WORKER_DEATH not in t.user_attrs
    ]
    streak = FailureStreak(limit)
    for t in sorted(trials, key=lambda t: (t.datetime_complete, t.number)):
        streak.add(t.state == optuna.trial.TrialState.FAIL, str(t.user_attrs.get(K.ERROR, "")))
    return streak.error() if streak.tripped else None
