"""The launcher <-> worker protocol: exit codes, the per-study folder, the config file and trial markers.

Light on purpose (no torch): the command line imports the exit codes at start.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path

from hpo.config import StudyConfig


class WorkerExit(IntEnum):
    """How a worker process ended (its exit code), read by the launcher."""

    DONE = 0  # the study reached its target
    POISONED = 3  # a fatal CUDA error: the launcher replaces the process
    RECYCLE = 10  # ran its K trials: the launcher starts a fresh process
    INTERRUPTED = 130  # SIGINT / SIGTERM


def worker_dir(cfg: StudyConfig) -> Path:
    """Where the launcher and its workers of one study keep their files."""
    return cfg.output_dir / "workers" / cfg.study


def config_path(cfg: StudyConfig) -> Path:
    """The resolved study config the launcher hands its workers."""
    return worker_dir(cfg) / "config.json"


def trial_file(cfg: StudyConfig, pid: int) -> Path:
    """Marker holding the number of the trial worker ``pid`` runs (absent between trials)."""
    return worker_dir(cfg) / f"{pid}.trial"
