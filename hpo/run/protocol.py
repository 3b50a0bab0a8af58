"""The launcher <-> worker protocol: exit codes, the per-study folder, the config file and trial markers.

Light on purpose (no torch): the command line imports the exit codes at start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from hpo.config.study import StudyConfig


class WorkerExit(IntEnum):
    """How a worker process ended (its exit code), read by the launcher."""

    DONE = 0  # the study reached its target
    POISONED = 3  # a fatal CUDA error: the launcher replaces the process
    DISK_FULL = 28  # a write failed on a full disk (errno ENOSPC): the launcher stops the run
    RECYCLE = 10  # ran its K trials: the launcher starts a fresh process
    STORAGE_DOWN = 75  # the storage stayed unreachable past --storage-retry (EX_TEMPFAIL): the run stops
    INTERRUPTED = 130  # SIGINT / SIGTERM


@dataclass(frozen=True)
class WorkerId:
    """Which worker of a launcher: its slot (0..PAR-1) and how many workers held that slot before it."""

    slot: int = 0
    generation: int = 0

    def __str__(self) -> str:
        return f"w{self.slot}.{self.generation}"


def worker_dir(cfg: StudyConfig) -> Path:
    """Where the launcher and its workers of one study keep their files."""
    return cfg.output_dir / "workers" / cfg.study


def config_path(cfg: StudyConfig) -> Path:
    """The resolved study config the launcher hands its workers."""
    return worker_dir(cfg) / "config.json"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600, from creation: no window for others)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp-private")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)  # an existing file keeps its mode through O_CREAT
    tmp.replace(path)


def trial_file(cfg: StudyConfig, pid: int) -> Path:
    """Marker holding the number of the trial worker ``pid`` runs and its phase (absent between trials)."""
    return worker_dir(cfg) / f"{pid}.trial"


def write_marker(path: Path, trial: int, phase: str) -> None:
    """``TRIAL PHASE``: which trial the worker runs and what it does now (replaced atomically)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{trial} {phase}")
    tmp.replace(path)


def read_marker(path: Path) -> tuple[int, str] | None:
    """The (trial, phase) in a marker; None when it is absent or unreadable."""
    try:
        number, _, phase = path.read_text().strip().partition(" ")
        return int(number), phase or "unknown"
    except (OSError, ValueError):
        return None
