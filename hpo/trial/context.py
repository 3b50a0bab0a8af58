"""What one trial carries from step to step: the sampled config, the form it runs in now, its estimate,
device, MLflow run and what happened so far (OOM records, peaks, position in training)."""

from __future__ import annotations

from dataclasses import dataclass, field

import optuna
import torch

from hpo.config.catalog import ModelSpec
from hpo.config.study import TrialConfig
from hpo.device.faults import FaultInjector
from hpo.device.oom import OomRecord, PeakMemory
from hpo.memory.budget import Budget


class WorkerPoisoned(Exception):
    """A fatal CUDA error (device-side assert, illegal access): this process must not run another trial."""


class TrialTakenOver(BaseException):
    """Another process finished this process's trial while it ran (a frozen worker's heartbeat went stale):
    the trial is abandoned, nothing more is written on it. Not an Exception, so that Optuna's ``optimize``
    lets it through without telling the finished trial (that raises); hpo.run.serial.run_one catches it."""

    def __init__(self, number: int, state: str) -> None:
        super().__init__(f"trial {number} was finished ({state}) by another process")
        self.number, self.state = number, state


@dataclass
class Position:
    """Where training is (the last step hook seen): OOM records name it."""

    epoch: int | None = None
    step: int | None = None


@dataclass
class TrialContext:
    """One trial in flight. ``tcfg``/``budget`` follow the form that runs now: as sampled, a lighter form that
    got admission, a shrunk one after an OOM, or the CPU fallback (``on_gpu`` False)."""

    trial: optuna.Trial
    sampled: TrialConfig
    spec: ModelSpec
    tcfg: TrialConfig
    budget: Budget
    device: torch.device
    on_gpu: bool  # the GPU budget applies (a real card or a simulated one)
    injector: FaultInjector
    run_id: str | None = None
    records: list[OomRecord] = field(default_factory=list)
    peak: PeakMemory | None = None
    position: Position = field(default_factory=Position)
    train_time_s: float | None = None  # the attempt that trained to the end (--objectives train_time)
    latency_ms: float | None = None  # per example on the validation split (--objectives latency)

    @property
    def number(self) -> int:
        return self.trial.number
