"""`hpo tune`: run a study in this process, or with ``--par N`` in N supervised worker processes."""

from __future__ import annotations

import os
import time

from hpo.config.study import StudyConfig
from hpo.progress import Progress
from hpo.run.card import record_foreign_memory
from hpo.run.launcher import run_parallel
from hpo.run.placement import gpu_count
from hpo.run.report import TuneReport
from hpo.run.serial import run_serial
from hpo.storage import retry as storage_retry


def run_tune(cfg: StudyConfig, progress: Progress | None = None) -> TuneReport:
    """Create or resume the study and run trials until it has ``cfg.n_trials`` finished ones."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    storage_retry.configure(cfg.storage_retry_s)  # storage calls wait out an outage this long
    started = time.monotonic()
    for note in record_foreign_memory(cfg):  # before any process of ours touches the card
        print(note, flush=True)
    if cfg.par > 1 or gpu_count(cfg) > 1:  # worker processes: several per GPU, or one per GPU of several
        return run_parallel(cfg, started)
    return run_serial(cfg, started, progress)
