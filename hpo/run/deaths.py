"""Worker deaths as evidence, and the crash-loop breaker of the launcher.

When a worker process dies, the launcher records how on its trial (:func:`evidence`: exit code or signal,
host RAM in use and available at that moment, the phase the worker was in, the likely cause). The
:class:`CrashLoop` breaker stops the launcher after K deaths in a row without a trial finishing in between,
so a config that kills every worker (the host runs out of RAM) cannot loop forever.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any

import optuna
import psutil

from hpo.study import FINISHED_STATES
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
