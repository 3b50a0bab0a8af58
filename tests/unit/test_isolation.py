"""Worker isolation: environment defaults, memory fraction, the CUDA cap (faked CUDA on CPU)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from hpo.run.isolation import ALLOC_CONF_DEFAULT, apply_memory_cap, memory_fraction, worker_env

GiB = 2**30


def test_worker_env_defaults() -> None:
    env = worker_env({"PATH": "/bin"}, par=4, cpu_count=16)
    assert env["PATH"] == "/bin"
    assert env["PYTORCH_CUDA_ALLOC_CONF"] == ALLOC_CONF_DEFAULT == "expandable_segments:True"
    assert env["TOKENIZERS_PARALLELISM"] == "false"
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "4"
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"


@pytest.mark.parametrize("var", ["PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF"])
def test_worker_env_keeps_user_allocator_config(var: str) -> None:
    env = worker_env({var: "max_split_size_mb:128"}, par=2, cpu_count=4)
    assert env[var] == "max_split_size_mb:128"
    assert "PYTORCH_CUDA_ALLOC_CONF" not in env or var == "PYTORCH_CUDA_ALLOC_CONF"


def test_worker_env_does_not_mutate_base() -> None:
    base = {"TOKENIZERS_PARALLELISM": "true"}
    env = worker_env(base, par=1, cpu_count=2)
    assert base == {"TOKENIZERS_PARALLELISM": "true"} and env["TOKENIZERS_PARALLELISM"] == "false"


@pytest.mark.parametrize(
    ("cpus", "par", "user", "expected"),
    [
        (16, 4, None, "4"),
        (2, 4, None, "1"),
        (7, 2, None, "3"),
        (16, 2, "2", "2"),
        (16, 2, "32", "8"),
        (16, 2, "junk", "8"),
    ],
)
def test_worker_env_threads(cpus: int, par: int, user: str | None, expected: str) -> None:
    base = {"OMP_NUM_THREADS": user} if user else {}
    env = worker_env(base, par=par, cpu_count=cpus)
    assert env["OMP_NUM_THREADS"] == expected
    assert env["MKL_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == str(cpus // par or 1)


def test_worker_env_rejects_bad_par() -> None:
    with pytest.raises(ValueError):
        worker_env({}, par=0)


def test_worker_env_default_cpu_count() -> None:
    assert int(worker_env({}, par=10_000)["OMP_NUM_THREADS"]) == 1


@pytest.mark.parametrize(
    ("reserved", "total", "margin", "context", "expected"),
    [
        (10 * GiB, 40 * GiB, 0, 0, 0.25),
        (9 * GiB, 40 * GiB, 1 * GiB, 0, 0.25),
        (10 * GiB, 40 * GiB, 1 * GiB, 1 * GiB, 0.25),
        (50 * GiB, 40 * GiB, 1 * GiB, 0, 1.0),
        (0, 40 * GiB, 0, 0, 1e-6),
        (1 * GiB, 40 * GiB, 0, 5 * GiB, 1e-6),
    ],
)
def test_memory_fraction_clamps(
    reserved: int, total: int, margin: int, context: int, expected: float
) -> None:
    fraction = memory_fraction(reserved, total, margin, context)
    assert 0 < fraction <= 1 and fraction == pytest.approx(expected)


def test_memory_fraction_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        memory_fraction(1, 0, 0)
    with pytest.raises(ValueError):
        memory_fraction(-1, 10, 0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU path")
def test_apply_memory_cap_is_a_noop_on_cpu() -> None:
    assert apply_memory_cap(8 * GiB, GiB) is None


def test_apply_memory_cap_with_fake_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[float, int]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: SimpleNamespace(total_memory=24 * GiB))
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, d: calls.append((f, d)))
    fraction = apply_memory_cap(11 * GiB, GiB, device=1)
    assert fraction == pytest.approx(0.5) and calls == [(fraction, 1)]
    assert apply_memory_cap(7 * GiB, GiB, context_bytes=2 * GiB) == pytest.approx(0.25)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cap_makes_this_process_oom() -> None:
    cap = apply_memory_cap(256 * 2**20, 0)
    assert cap is not None
    with pytest.raises(torch.OutOfMemoryError):
        torch.empty(512 * 2**20, dtype=torch.uint8, device="cuda")
    torch.cuda.set_per_process_memory_fraction(1.0)


def test_worker_context_is_measured_from_nvml_less_the_allocator_blocks() -> None:
    from hpo.run.isolation import measure_context

    mib = 2**20
    assert measure_context(512 * mib, lambda: 700 * mib, lambda: 2 * mib) == 698 * mib
    assert measure_context(512 * mib, lambda: None, lambda: 2 * mib) == 512 * mib  # no NVML: the profile's
    assert measure_context(512 * mib, lambda: 2 * mib, lambda: 2 * mib) == 512 * mib  # nothing but blocks
