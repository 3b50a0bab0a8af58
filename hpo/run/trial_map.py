"""The launcher's own record of which trial each of its workers runs.

A worker announces its trial in a marker file (hpo.run.protocol) and removes it when it leaves, also when it
dies of an exception. The launcher reads the markers of its live workers at every poll and keeps what it saw;
when a worker exits it also looks up the RUNNING trials that recorded the worker's pid. So the trial of a
worker that is gone is always found (and failed by the launcher), however the worker ended.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from hpo.config.study import StudyConfig
from hpo.run.deaths import evidence
from hpo.run.liveness import trials_of
from hpo.run.protocol import read_marker, trial_file
from hpo.trial import keys as K
from hpo.trial import outcomes


class WorkerTrials:
    """pid -> (trial, phase) of the launcher's workers, from their markers and the storage."""

    def __init__(self, cfg: StudyConfig) -> None:
        self.cfg = cfg
        self.held: dict[int, tuple[int, str]] = {}  # the last marker seen for each live worker
        self.ran: set[int] = set()  # workers seen running a trial

    def observe(self, pids: Iterable[int]) -> None:
        """Read the markers of the live workers ``pids`` (call at every poll)."""
        for pid in pids:
            found = read_marker(trial_file(self.cfg, pid))
            if found is not None:
                self.held[pid] = found
                self.ran.add(pid)

    def left(self, study: optuna.Study, pid: int) -> tuple[bool, list[tuple[int, str]]]:
        """For worker ``pid``, which has exited: whether it ever ran a trial, and the (trial, phase) it may
        have left RUNNING (its marker, what the launcher last saw, its RUNNING trials in the storage). The
        worker is forgotten and its marker removed."""
        marker = trial_file(self.cfg, pid)
        found = read_marker(marker) or self.held.get(pid)
        marker.unlink(missing_ok=True)
        self.held.pop(pid, None)
        mine = trials_of(study.get_trials(deepcopy=False), pid)
        ran = bool(mine) or found is not None or pid in self.ran
        self.ran.discard(pid)
        phases = dict([found]) if found is not None else {}
        for t in mine:
            if t.state == TrialState.RUNNING:
                phases.setdefault(t.number, "unknown")
        return ran, sorted(phases.items())

    def fail_left(
        self, study: optuna.Study, pid: int, rc: int, name: str
    ) -> tuple[bool, dict[str, Any], list[int]]:
        """Worker ``pid`` (``name``) exited with ``rc``: fail each trial it left RUNNING with how it died and
        enqueue one retry (as heartbeats would). Returns whether it ever ran a trial, the evidence of its
        death (with the trial and its config; empty when it left none) and the trials failed."""
        ran, left = self.left(study, pid)
        death: dict[str, Any] = {}
        failed_numbers = []
        for number, phase in left:
            found = evidence(rc, phase, name)
            failed = outcomes.worker_died(study, number, found)
            if failed is not None:
                RetryHeartbeatStaleTrialCallback(max_retry=1)(study, failed)
                failed_numbers.append(number)
                death = found | {"trial": number, "config": failed.user_attrs.get(K.TRIAL_CONFIG)}
        return ran, death, failed_numbers
