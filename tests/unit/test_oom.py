"""OOM detection, memory release, records, shrink and peak readings: all on CPU with real torch objects."""

from __future__ import annotations

import json
import weakref

import pytest
import torch

from hpo.config.study import TrialConfig
from hpo.device.oom import (
    OOM_FIELDS,
    OomRecord,
    PeakMemory,
    clear_exception_frames,
    cpu_fallback_allowed,
    free_memory,
    is_fatal_cuda_error,
    is_oom,
    measure_peak,
    memory_now,
    shrink,
)

_DSA_TAIL = (
    "\nCUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace below "
    "might be incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1\n"
    "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.\n"
)

OOM_MESSAGES = [
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.65 GiB of which "
    "1.2 MiB is free.",
    "CUDA error: out of memory" + _DSA_TAIL,
    "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
    "cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
    "cuDNN error: CUDNN_STATUS_NOT_ENOUGH_WORKSPACE",
    "HIP out of memory. Tried to allocate 20.00 MiB",
    "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried to "
    "allocate 107374182400 bytes. Error code 12 (Cannot allocate memory)",
]
NOT_OOM = [
    ValueError("CUDA out of memory"),  # wrong type: not raised by torch
    RuntimeError("CUDA error: device-side assert triggered" + _DSA_TAIL),
    RuntimeError(
        "Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!"
    ),
    RuntimeError("the caption cache is out of memory slots"),
    KeyError("cuda"),
]
FATAL = [
    "CUDA error: device-side assert triggered" + _DSA_TAIL,
    "CUDA error: an illegal memory access was encountered" + _DSA_TAIL,
    "CUDA error: unspecified launch failure",
    "CUDA error: uncorrectable ECC error encountered",
]


def _cfg(**kw: object) -> TrialConfig:
    base: dict[str, object] = {
        "model": "bert-base-uncased",
        "learning_rate": 3e-5,
        "batch_size": 32,
        "grad_accum": 2,
        "max_length": 384,
        "precision": "bf16",
    }
    return TrialConfig.model_validate({**base, **kw})


def test_real_torch_oom_types() -> None:
    assert is_oom(torch.cuda.OutOfMemoryError("anything"))
    assert is_oom(torch.OutOfMemoryError("anything"))
    assert not is_fatal_cuda_error(torch.cuda.OutOfMemoryError("CUDA out of memory."))


@pytest.mark.parametrize("msg", OOM_MESSAGES)
def test_runtime_error_messages(msg: str) -> None:
    assert is_oom(RuntimeError(msg))
    assert not is_fatal_cuda_error(RuntimeError(msg))


@pytest.mark.parametrize("exc", NOT_OOM, ids=lambda e: type(e).__name__ + ":" + str(e)[:30])
def test_not_oom(exc: BaseException) -> None:
    assert not is_oom(exc)


@pytest.mark.parametrize("msg", FATAL)
def test_fatal(msg: str) -> None:
    assert is_fatal_cuda_error(RuntimeError(msg))
    assert not is_oom(RuntimeError(msg))


def test_chained_cause_and_context() -> None:
    try:
        try:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory.")
        except RuntimeError as inner:
            raise ValueError("forward failed") from inner
    except ValueError as outer:
        assert is_oom(outer)
    try:
        try:
            raise RuntimeError("CUBLAS_STATUS_ALLOC_FAILED")
        except RuntimeError:
            raise KeyError("during handling") from None  # __context__ is kept, __cause__ suppressed
    except KeyError as outer2:
        assert outer2.__context__ is not None and is_oom(outer2)


def test_fatal_anywhere_in_chain_wins_over_oom() -> None:
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory.")
    oom.__context__ = RuntimeError("CUDA error: an illegal memory access was encountered")
    assert is_fatal_cuda_error(oom) and not is_oom(oom)


def test_cyclic_chain_terminates() -> None:
    a, b = RuntimeError("a"), RuntimeError("b")
    a.__context__, b.__context__ = b, a
    assert not is_oom(a) and not is_fatal_cuda_error(a)


def _train_step(refs: list[weakref.ref[torch.Tensor]]) -> None:
    activations = torch.zeros(4 * 1024 * 1024)  # 16 MB held only by this frame's locals
    refs.append(weakref.ref(activations))
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 16.00 MiB")


def test_clear_frames_and_free_memory_release_locals() -> None:
    refs: list[weakref.ref[torch.Tensor]] = []
    caught: BaseException | None = None
    try:
        _train_step(refs)
    except RuntimeError as exc:
        caught = exc
    assert caught is not None and is_oom(caught)
    free_memory()
    assert refs[0]() is not None  # the traceback still pins the tensor: this is the leak we fix
    clear_exception_frames(caught)
    free_memory()
    assert refs[0]() is None


def test_free_memory_safe_on_cpu() -> None:
    free_memory()
    free_memory()


def test_oom_record_from_trial_config() -> None:
    cfg = _cfg(grad_checkpointing=True)
    exc = torch.cuda.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2.00 GiB.\nsecond line" + "x" * 300
    )
    rec = OomRecord.from_trial_config(
        cfg, exc, estimated_peak_gb=30.5, measured_peak_gb=23.9, epoch=1, step=7, attempt=2, policy="shrink"
    )
    d = rec.to_dict()
    assert tuple(d) == OOM_FIELDS
    assert d == {
        "model": "bert-base-uncased",
        "batch_size": 32,
        "grad_accum": 2,
        "effective_batch": 64,
        "max_length": 384,
        "precision": "bf16",
        "grad_checkpointing": True,
        "estimated_peak_gb": 30.5,
        "measured_peak_gb": 23.9,
        "epoch": 1,
        "step": 7,
        "error_head": "CUDA out of memory. Tried to allocate 2.00 GiB.",
        "attempt": 2,
        "policy": "shrink",
        "origin": "",
        "after_allocated_gb": None,
        "after_reserved_gb": None,
        "after_process_gb": None,
    }
    assert json.loads(json.dumps(d)) == d
    long = OomRecord.from_trial_config(
        cfg, RuntimeError("y" * 500), estimated_peak_gb=None, measured_peak_gb=None, epoch=None, step=None
    )
    assert len(long.error_head) == 200 and long.attempt == 0 and long.policy == "prune"
    empty = OomRecord.from_trial_config(
        cfg,
        torch.cuda.OutOfMemoryError(),
        estimated_peak_gb=None,
        measured_peak_gb=None,
        epoch=None,
        step=None,
    )
    assert empty.error_head == "OutOfMemoryError"


def test_shrink_keeps_effective_batch_until_floor() -> None:
    cfg: TrialConfig | None = _cfg(batch_size=32, grad_accum=2)
    seen = []
    while cfg is not None:
        assert cfg.effective_batch == 64
        seen.append((cfg.batch_size, cfg.grad_accum))
        cfg = shrink(cfg)
    assert seen == [(32, 2), (16, 4), (8, 8), (4, 16), (2, 32), (1, 64)]
    assert shrink(_cfg(batch_size=8), min_batch_size=4) == _cfg(batch_size=4, grad_accum=4)
    assert shrink(_cfg(batch_size=4), min_batch_size=4) is None
    odd = shrink(_cfg(batch_size=12, grad_accum=1))
    assert odd is not None and (odd.batch_size, odd.grad_accum) == (6, 2)
    three = shrink(_cfg(batch_size=3, grad_accum=2))  # odd sizes divide by their smallest factor
    assert three is not None and (three.batch_size, three.grad_accum) == (1, 6)
    original = _cfg()
    shrink(original)
    assert original.batch_size == 32  # not mutated


def test_cpu_fallback_allowed() -> None:
    assert cpu_fallback_allowed(22_700_000)  # MiniLM-L6
    assert cpu_fallback_allowed(150_000_000)
    assert not cpu_fallback_allowed(335_000_000)  # bert-large
    assert cpu_fallback_allowed(335_000_000, limit=400_000_000)
    assert not cpu_fallback_allowed(0)


def test_measure_peak_on_cpu() -> None:
    peak = measure_peak()
    assert isinstance(peak, PeakMemory)
    if not torch.cuda.is_available():
        assert (peak.allocated_bytes, peak.reserved_bytes) == (0, 0)
        assert peak.nvml_process_bytes is None


def test_accelerator_error_type() -> None:
    """Recent torch raises CUDA runtime errors as torch.AcceleratorError (a RuntimeError)."""
    assert is_fatal_cuda_error(torch.AcceleratorError("CUDA error: an illegal memory access was encountered"))
    assert is_oom(torch.AcceleratorError("CUDA error: out of memory" + _DSA_TAIL))


def test_oom_record_keeps_the_memory_left_after_cleanup() -> None:
    """What the process still holds once the OOM is cleaned up is on the record (None on CPU)."""
    rec = OomRecord.from_trial_config(
        _cfg(), torch.cuda.OutOfMemoryError(), estimated_peak_gb=1.0, measured_peak_gb=None, epoch=0, step=0
    )
    rec.cleaned_up(memory_now())
    assert rec.after_reserved_gb is None  # no CUDA here: nothing read
    rec.cleaned_up(PeakMemory(3 * 2**20, 2 * 2**30, 3 * 2**30))
    d = rec.to_dict()
    assert (d["after_allocated_gb"], d["after_reserved_gb"], d["after_process_gb"]) == (0.0029, 2.0, 3.0)
