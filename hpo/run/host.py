"""Host-RAM admission of PAR workers: the ledger of ``hpo.run.ledger`` under a host key.

Every live worker holds its own baseline (Python, torch, the encoded data) for its whole life; each trial
reserves its estimated host-RAM peak (``hpo.memory.host``) before it loads a model, waiting while the sum
would pass the host's capacity less a headroom, and releases it on any exit path. The capacity is
``--host-memory`` when given (a smaller host simulated for tests), else the RAM available when the launcher
started.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from hpo.config.study import StudyConfig
from hpo.memory.host import PROCESS_BASELINE, host_available, host_headroom
from hpo.run.ledger import Ledger
from hpo.run.reservations import HOST, Reservation, ledger_path_for
from hpo.units import parse_memory

HOST_KEY = f"host-ram:{HOST}"


def host_capacity(cfg: StudyConfig) -> int:
    """What the study's trials and workers may hold in host RAM: ``--host-memory`` (else the RAM available
    now) less the headroom."""
    total = parse_memory(cfg.host_memory) if cfg.host_memory else host_available()
    return max(0, total - host_headroom(total))


class HostLedgerAdmission:
    """One worker's host-RAM admission (an ``hpo.trial.admission.HostAdmission``)."""

    def __init__(self, ledger: Ledger, baseline_bytes: int = PROCESS_BASELINE) -> None:
        self.ledger, self.baseline_bytes = ledger, baseline_bytes
        self._hold: Reservation | None = None

    def start(self) -> None:
        self._hold = self.ledger.hold_process(self.baseline_bytes, label=f"worker pid {os.getpid()} baseline")

    def close(self) -> None:
        if self._hold is not None:
            self.ledger.release(self._hold)
            self._hold = None

    @contextlib.contextmanager
    def __call__(self, nbytes: int, trial: int) -> Iterator[Reservation]:
        """Hold ``nbytes`` of host RAM for trial ``trial`` while the block runs (waiting for room)."""
        with self.ledger.reserved(nbytes, trial=trial, label=f"worker pid {os.getpid()} host RAM") as res:
            yield res


def make_host_admission(cfg: StudyConfig) -> HostLedgerAdmission:
    """The worker's host-RAM admission, in the study's ledger file beside the GPU's."""
    ledger = Ledger(ledger_path_for(cfg.storage_url, cfg.output_dir), HOST_KEY, host_capacity(cfg))
    return HostLedgerAdmission(ledger)
