"""Sizing a trial against the GPU budget: estimate (+ calibration), pre-check, simulated peak, measured peak.

The budget comes from a real GPU, a simulated one (``--gpu-memory`` with no CUDA device) or none (a plain CPU
run: nothing is pruned by memory). Gradient accumulation never enters: it does not change memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hpo.config.catalog import LORA_TARGET_SETS, ModelSpec
from hpo.config.study import TrialConfig
from hpo.device.allocator import DEFAULT_ALLOCATOR, Allocator
from hpo.device.oom import PeakMemory
from hpo.memory.budget import Budget, MemoryRequest, fits
from hpo.memory.calibrate import Calibration, calibration_key, oom_origin
from hpo.memory.estimate import estimate
from hpo.memory.host import host_available, host_headroom, host_peak_bytes
from hpo.memory.phases import with_evaluation
from hpo.memory.trace import trace_estimate
from hpo.trial import keys as K
from hpo.units import GIB, gb


def memory_request(cfg: TrialConfig, num_labels: int, seq_len: int | None = None) -> MemoryRequest:
    """The estimator's view of a trial; ``seq_len``: the widest batch the data gives (default max_length)."""
    return MemoryRequest(
        batch_size=cfg.batch_size,
        max_length=cfg.max_length if seq_len is None else seq_len,
        precision=cfg.precision,
        optimizer=cfg.optimizer,
        grad_checkpointing=cfg.grad_checkpointing,
        num_labels=num_labels,
        frozen_layers=cfg.frozen_layers,
        lora_r=cfg.lora_r,
        lora_targets=LORA_TARGET_SETS[cfg.lora_targets],
        lora_dropout=cfg.lora_dropout if cfg.lora_r else 0.0,
        quant=None if cfg.quant == "none" else cfg.quant,
    )


@dataclass
class MemoryPolicy:
    """Where the memory budget comes from: a real GPU, a simulated one (--gpu-memory on CPU) or none."""

    gpu_bytes: int | None
    headroom_bytes: int
    simulated: bool = False
    high_memory_fraction: float = 0.9
    resident_bytes: int = 0  # held on the card by the other worker processes (their CUDA contexts)
    allocator: Allocator = DEFAULT_ALLOCATOR  # CUDA context and allocator overhead (the GPU profile's)
    card: str = ""  # the card's name (NVML) for calibration keys; "" without a real card
    capped: bool = False  # a --par worker: its allocator is capped at its reservation (+ a margin)

    @property
    def real(self) -> bool:
        """A real CUDA card (not simulated, not none): the only source of calibration evidence."""
        return self.gpu_bytes is not None and not self.simulated

    host_bytes: int | None = None  # --host-memory: the host RAM the study may use (None: what is available)

    @property
    def limit_bytes(self) -> int:
        """What one trial may use: the card minus the headroom and the other workers' memory (0 without a
        budget)."""
        return max(0, (self.gpu_bytes or 0) - self.headroom_bytes - self.resident_bytes)


@dataclass
class Sizer:
    """Estimates and checks one process's trials against its memory policy."""

    memory: MemoryPolicy
    num_labels: int
    calibration: Calibration | None = None
    prune_by_estimate: bool = True
    eval_batch_size: int = 64  # the study's; a trial evaluates at the largest batch up to it within its peak
    # (model, max_length) -> the widest batch the data can produce (dynamic padding); None: max_length
    longest: Callable[[ModelSpec, int], int] | None = None

    def request(self, spec: ModelSpec, tcfg: TrialConfig) -> MemoryRequest:
        """The estimator's view of the trial at the sequence length its batches really reach, with its
        evaluation phase (hpo.memory.phases)."""
        seq_len = self.longest(spec, tcfg.max_length) if self.longest is not None else None
        req = memory_request(tcfg, self.num_labels, seq_len)
        return with_evaluation(spec, req, self.eval_batch_size, self.memory.allocator)

    def key(self, spec: ModelSpec, req: MemoryRequest) -> str:
        """The calibration evidence key of ``req`` on this card."""
        return calibration_key(spec.name, self.memory.card, self.memory.gpu_bytes or 0, req)

    def eval_batch(self, spec: ModelSpec, tcfg: TrialConfig) -> int:
        """The evaluation batch the trial runs with (the one its estimate covers)."""
        return self.request(spec, tcfg).eval_batch_size or self.eval_batch_size

    def estimate(self, spec: ModelSpec, tcfg: TrialConfig) -> Budget:
        """Analytic estimate over the trial's phases, corrected by real measurements (calibrate.py)."""
        req = self.request(spec, tcfg)
        budget = estimate(spec, req, self.memory.allocator)
        if self.calibration is None or not self.memory.real:
            return budget
        return self.calibration.correct(self.key(spec, req), budget)

    def host_bytes(self, spec: ModelSpec, tcfg: TrialConfig, on_cuda: bool) -> int:
        """The trial's host-RAM peak beyond its worker process (``hpo.memory.host``)."""
        return host_peak_bytes(spec, memory_request(tcfg, self.num_labels), on_cuda)

    def host_has_room(self, nbytes: int) -> bool:
        """Whether the host has ``nbytes`` free now beside its headroom (``--host-memory`` caps it)."""
        room = host_available(self.memory.host_bytes)
        return nbytes <= room - host_headroom(self.memory.host_bytes or room)

    def over_budget(self, spec: ModelSpec, tcfg: TrialConfig, budget: Budget) -> str | None:
        """Why this config cannot run on the GPU budget (None when it fits or there is no budget)."""
        if self.memory.gpu_bytes is None or not self.prune_by_estimate:
            return None
        reserved = self.memory.headroom_bytes + self.memory.resident_bytes
        ok, _ = fits(budget, self.memory.gpu_bytes, reserved)
        if not ok:
            beside = f" beside the other workers' {self.memory.resident_bytes / GIB:.2f} GB"
            return (
                f"estimated peak {budget.device_total_bytes / GIB:.2f} GB > budget "
                f"{self.memory.limit_bytes / GIB:.2f} GB{beside if self.memory.resident_bytes else ''}"
            )
        req = self.request(spec, tcfg)
        if self.calibration is not None and self.calibration.known_oom(self.key(spec, req), req):
            return "a near-identical config ran out of memory on this card before"
        return None

    def simulated_peak(self, spec: ModelSpec, tcfg: TrialConfig, budget: Budget) -> int:
        """What a simulated card 'really' needs: the exact meta-device trace peak, else the estimate."""
        try:
            return trace_estimate(spec, self.request(spec, tcfg), self.memory.allocator).device_total_bytes
        except Exception:  # the trace does not cover every architecture: fall back to the analytic estimate
            return budget.device_total_bytes

    def record_oom(
        self, spec: ModelSpec, tcfg: TrialConfig, budget: Budget, message: str, on_cuda: bool
    ) -> str:
        """Classify an OOM (hpo.memory.calibrate.oom_origin) and feed the calibration only with a real one.

        Returns the origin, which the trial records whatever it is.
        """
        neighbours = self.memory.resident_bytes > 0
        origin = oom_origin(
            message,
            on_cuda=on_cuda and self.memory.real,
            simulated=self.memory.simulated,
            neighbours=neighbours,
        )
        if self.calibration is not None:
            req = self.request(spec, tcfg)
            estimated = int(budget.device_total_bytes / budget.factor)
            # what the OOM proves the peak exceeded: the worker's cap (its reservation), else the budget
            limit = budget.device_total_bytes if self.memory.capped else self.memory.limit_bytes
            self.calibration.record_oom(self.key(spec, req), req, estimated, limit, origin)
        return origin

    def measured(
        self, spec: ModelSpec, tcfg: TrialConfig, budget: Budget, peak: PeakMemory
    ) -> dict[str, Any]:
        """The measured peaks as user attrs / metrics (GB) and whether the trial was high-memory.

        Feeds the calibration with the device-level peak (reserved + context, or NVML when larger).
        """
        device_peak = max(
            peak.reserved_bytes + budget.components.get("cuda_context", 0), peak.nvml_process_bytes or 0
        )
        out: dict[str, Any] = {
            K.MEASURED_PEAK_GB: gb(peak.allocated_bytes),
            K.MEASURED_RESERVED_GB: gb(peak.reserved_bytes),
            K.MEASURED_DEVICE_GB: gb(device_peak),
        }
        if peak.nvml_process_bytes is not None:
            out[K.NVML_PROCESS_GB] = gb(peak.nvml_process_bytes)
        if self.memory.gpu_bytes:
            out[K.HIGH_MEMORY] = device_peak > self.memory.high_memory_fraction * self.memory.gpu_bytes
        if self.calibration is not None and self.memory.real:  # compared with the uncalibrated estimate
            req = self.request(spec, tcfg)
            estimated = int(budget.device_total_bytes / budget.factor)
            self.calibration.record_peak(self.key(spec, req), req, estimated, device_peak)
        return out
