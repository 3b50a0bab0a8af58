"""OOM primitives: detect CUDA out-of-memory errors, release memory, record and shrink the failing config.

Conventions of a trial (written by ``hpo.trial.outcomes``, read back by ``hpo.results.oom_report``):

- A trial that runs out of memory gets the user attrs ``oom=True``, ``oom_config`` (``OomRecord.to_dict()``)
  and ``pruned_reason="oom"``, and is PRUNED before any ``report()`` of the failing attempt.
- Policies (``--on-oom``): ``prune`` records and prunes; ``shrink`` retries with ``shrink(cfg)`` (half the
  micro-batch, more accumulation, same effective batch) until the floor; ``cpu`` reruns on the CPU, only
  when ``cpu_fallback_allowed(n_params)``.
- A fatal CUDA error (``is_fatal_cuda_error``) poisons the CUDA context: record FAIL and end the worker.
  Check it before ``is_oom``; ``is_oom`` is False for any chain that holds a fatal error.

torch is imported lazily so that ``hpo oom`` and ``hpo trials`` start fast.
"""

from __future__ import annotations

import contextlib
import gc
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any

from hpo.config.study import TrialConfig
from hpo.device.gpu import process_memory_bytes
from hpo.units import GIB

# Messages torch raises as a plain RuntimeError when an allocation fails (case-sensitive substrings).
_OOM_MARKERS = (
    "CUDA out of memory",  # CUDACachingAllocator (also raised as torch.OutOfMemoryError)
    "HIP out of memory",
    "XPU out of memory",
    "MPS backend out of memory",
    "CUDA error: out of memory",  # cudaErrorMemoryAllocation via C10_CUDA_CHECK
    "HIP error: out of memory",
    "hipErrorOutOfMemory",
    "CUDA driver error: out of memory",
    "CUBLAS_STATUS_ALLOC_FAILED",  # cublasCreate / workspace allocation
    "CUDNN_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_NOT_ENOUGH_WORKSPACE",
    "CUSOLVER_STATUS_ALLOC_FAILED",
    "CUSPARSE_STATUS_ALLOC_FAILED",
    "CUFFT_ALLOC_FAILED",
    "DefaultCPUAllocator: can't allocate memory",
)

# Sticky CUDA errors: the context is unusable afterwards. Every CUDA error message ends with
# "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions", hence "assert triggered".
_FATAL_MARKERS = (
    "device-side assert triggered",
    "an illegal memory access was encountered",
    "an illegal instruction was encountered",
    "misaligned address",
    "unspecified launch failure",
    "uncorrectable ECC error",
    "ECC error encountered",
    "hardware stack error",
    "the launch timed out and was terminated",
    "CUBLAS_STATUS_EXECUTION_FAILED",
    "cudaErrorIllegalAddress",
    "cudaErrorAssert",
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception reachable through ``__cause__``/``__context__`` (cycle-safe)."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        cur = stack.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        yield cur
        for nxt in (cur.__cause__, cur.__context__):
            if nxt is not None:
                stack.append(nxt)


def _is_fatal_one(exc: BaseException) -> bool:
    msg = str(exc)
    return isinstance(exc, RuntimeError) and any(m in msg for m in _FATAL_MARKERS)


def _is_oom_one(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.OutOfMemoryError):  # torch.cuda.OutOfMemoryError is the same class
        return True
    msg = str(exc)
    return isinstance(exc, RuntimeError) and any(m in msg for m in _OOM_MARKERS)


def is_fatal_cuda_error(exc: BaseException) -> bool:
    """True when the chain holds a sticky CUDA error (device assert, illegal access, ECC...)."""
    return any(_is_fatal_one(e) for e in _chain(exc))


def is_oom(exc: BaseException) -> bool:
    """True when the chain holds an allocation failure that a smaller config could avoid."""
    if is_fatal_cuda_error(exc):
        return False
    return any(_is_oom_one(e) for e in _chain(exc))


def clear_exception_frames(exc: BaseException) -> None:
    """Clear the locals of every frame in the chain's tracebacks, so models and batches can be freed."""
    for e in _chain(exc):
        if e.__traceback__ is not None:
            traceback.clear_frames(e.__traceback__)


def free_memory() -> None:
    """Collect garbage and return cached CUDA blocks; safe on CPU and on a poisoned context."""
    gc.collect()
    try:
        import torch

        if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
            return
        with contextlib.suppress(RuntimeError):
            torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    except Exception:  # a broken context must not turn cleanup into a second failure
        pass


@dataclass
class OomRecord:
    """What ran out of memory, where, and what the estimator expected (JSON-able via ``to_dict``)."""

    model: str
    batch_size: int
    grad_accum: int
    effective_batch: int
    max_length: int
    precision: str
    grad_checkpointing: bool
    estimated_peak_gb: float | None
    measured_peak_gb: float | None
    epoch: int | None
    step: int | None
    error_head: str
    attempt: int = 0
    policy: str = "prune"
    origin: str = ""  # injected | simulated | host_ram | neighbour | cuda (only cuda calibrates)
    # this process's memory once the OOM was cleaned up (free_memory), before the reservation is released:
    # what a neighbour gets back; None on CPU or before the cleanup ran
    after_allocated_gb: float | None = None
    after_reserved_gb: float | None = None
    after_process_gb: float | None = None

    def cleaned_up(self, now: PeakMemory | None) -> None:
        """Record the memory this process still holds after the OOM's cleanup (``memory_now``)."""
        if now is not None:
            self.after_allocated_gb = round(now.allocated_bytes / GIB, 4)
            self.after_reserved_gb = round(now.reserved_bytes / GIB, 4)
            gb = None if now.nvml_process_bytes is None else round(now.nvml_process_bytes / GIB, 4)
            self.after_process_gb = gb

    @classmethod
    def from_trial_config(
        cls,
        cfg: TrialConfig,
        exc: BaseException,
        *,
        estimated_peak_gb: float | None,
        measured_peak_gb: float | None,
        epoch: int | None,
        step: int | None,
        attempt: int = 0,
        policy: str = "prune",
        origin: str = "",
    ) -> OomRecord:
        return cls(
            model=cfg.model,
            batch_size=cfg.batch_size,
            grad_accum=cfg.grad_accum,
            effective_batch=cfg.effective_batch,
            max_length=cfg.max_length,
            precision=cfg.precision,
            grad_checkpointing=cfg.grad_checkpointing,
            estimated_peak_gb=estimated_peak_gb,
            measured_peak_gb=measured_peak_gb,
            epoch=epoch,
            step=step,
            error_head=error_head(exc),
            attempt=attempt,
            policy=policy,
            origin=origin,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


OOM_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(OomRecord))


def error_head(exc: BaseException, limit: int = 200) -> str:
    """First line of ``str(exc)`` (the class name when empty), at most ``limit`` characters."""
    text = str(exc).strip()
    head = text.splitlines()[0] if text else type(exc).__name__
    return head[:limit]


def _smallest_factor(n: int) -> int:
    for d in range(2, int(n**0.5) + 1):
        if n % d == 0:
            return d
    return n


def shrink(cfg: TrialConfig, min_batch_size: int = 1) -> TrialConfig | None:
    """Smaller micro-batch, same effective batch: divide by the smallest factor (2 for even sizes) and
    multiply grad_accum by it. None when the result would fall below ``min_batch_size``."""
    if cfg.batch_size <= 1:
        return None
    factor = _smallest_factor(cfg.batch_size)
    new_batch = cfg.batch_size // factor
    if new_batch < max(1, min_batch_size):
        return None
    return cfg.model_copy(update={"batch_size": new_batch, "grad_accum": cfg.grad_accum * factor})


def cpu_fallback_allowed(n_params: int, limit: int = 150_000_000) -> bool:
    """The ``cpu`` policy only reruns small models: a large one would take hours on the CPU."""
    return 0 < n_params <= limit


@dataclass
class PeakMemory:
    """Peak bytes since the last reset (torch) and this process's current NVML usage (None if unknown)."""

    allocated_bytes: int
    reserved_bytes: int
    nvml_process_bytes: int | None

    @property
    def reserved_gb(self) -> float:
        return self.reserved_bytes / GIB


def measure_peak() -> PeakMemory:
    """Read peak memory now (call it before ``free_memory``, which resets the peaks). Never raises."""
    allocated = reserved = 0
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            allocated = int(torch.cuda.max_memory_allocated())
            reserved = int(torch.cuda.max_memory_reserved())
    except Exception:
        pass
    return PeakMemory(allocated, reserved, process_memory_bytes())


def memory_now() -> PeakMemory | None:
    """This process's CUDA memory now: allocated, reserved and NVML usage; None without CUDA in use."""
    try:
        import torch

        if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
            return None
        allocated, reserved = int(torch.cuda.memory_allocated()), int(torch.cuda.memory_reserved())
    except Exception:
        return None
    return PeakMemory(allocated, reserved, process_memory_bytes())
