"""A 24 GB card carved out of a bigger one: the ballast, the configured card and a foreign process on the
device, with NVML and torch.cuda faked (no GPU here)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from hpo.bench import ballast
from hpo.bench.ballast import TOLERANCE, ballast_bytes, carve
from hpo.config.study import StudyConfig
from hpo.device.gpu import (
    DRIVER_BASELINE,
    FOREIGN_ENV,
    GpuInfo,
    foreign_bytes,
    foreign_from_env,
    usable_card_bytes,
)
from hpo.run import placement, setup
from hpo.run.card import card_status, record_foreign_memory
from hpo.trial.sizing import MemoryPolicy
from hpo.units import GIB, MIB

H200 = 141 * GIB


class FakeDevice:
    """torch.cuda's view of one device: free/total, allocations that take from free, a context on init."""

    def __init__(self, total: int, used: int, context: int = 500 * MIB, rounding: int = 0) -> None:
        self.total, self.free = total, total - used - context
        self.rounding = rounding  # a huge first block takes a little less than asked from free
        self.allocations: list[int] = []

    def mem_info(self) -> tuple[int, int]:
        return self.free, self.total

    def allocate(self, nbytes: int) -> int:
        if nbytes > self.free:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        taken = nbytes - self.rounding if nbytes > 64 * self.rounding else nbytes
        self.free -= taken
        self.allocations.append(taken)
        return taken


def test_the_ballast_leaves_exactly_the_card_it_emulates() -> None:
    device = FakeDevice(H200, used=2 * GIB)
    blocks, info = carve(24 * GIB, device.mem_info, device.allocate)
    assert info.free_after_bytes == 24 * GIB and info.total_bytes == H200
    assert info.held_bytes == sum(blocks) == H200 - 2 * GIB - 500 * MIB - 24 * GIB


def test_the_ballast_tops_up_what_block_rounding_leaves_free() -> None:
    device = FakeDevice(H200, used=0, rounding=300 * MIB)
    blocks, info = carve(24 * GIB, device.mem_info, device.allocate)
    assert len(blocks) > 1  # the first block left 300 MiB more free than asked: topped up
    assert 24 * GIB <= info.free_after_bytes <= 24 * GIB + TOLERANCE


def test_the_ballast_refuses_a_device_with_less_free_than_the_card() -> None:
    with pytest.raises(ValueError, match=r"only 10\.00 GiB free"):
        ballast_bytes(10 * GIB, 24 * GIB)
    device = FakeDevice(40 * GIB, used=30 * GIB)
    with pytest.raises(ValueError, match="keep less"):
        carve(24 * GIB, device.mem_info, device.allocate)


def test_no_ballast_without_cuda() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with ballast.hold(24 * GIB) as info:
        assert info is None


class FakeNvml:
    """pynvml with one or two devices and the processes on them."""

    def __init__(self, used: list[int], processes: list[list[int]] | None) -> None:
        self.used, self.processes = used, processes

    def nvmlDeviceGetCount(self) -> int:
        return len(self.used)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetMemoryInfo(self, i: int) -> Any:
        return SimpleNamespace(total=H200, used=self.used[i])

    def nvmlDeviceGetComputeRunningProcesses(self, i: int) -> list[Any]:
        listed = [] if self.processes is None else self.processes[i]
        return [SimpleNamespace(pid=1000 + k, usedGpuMemory=b) for k, b in enumerate(listed)]


def test_foreign_memory_is_what_the_listed_processes_hold() -> None:
    nvml = FakeNvml(used=[118 * GIB, 0], processes=[[117 * GIB, 400 * MIB], []])
    assert foreign_bytes(0, nvml) == 117 * GIB + 400 * MIB
    assert foreign_bytes(1, nvml) == 0  # an idle card


def test_foreign_memory_when_a_container_hides_the_processes() -> None:
    nvml = FakeNvml(used=[100 * GIB], processes=None)
    assert foreign_bytes(0, nvml) == 100 * GIB - DRIVER_BASELINE
    assert foreign_bytes(0, FakeNvml(used=[300 * MIB], processes=None)) == 0  # the driver's own


def test_foreign_memory_follows_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    nvml = FakeNvml(used=[0, 50 * GIB], processes=[[], [50 * GIB]])
    assert foreign_bytes(0, nvml) == 50 * GIB  # torch device 0 is NVML device 1


def test_the_usable_card_is_the_configured_one_within_what_others_leave() -> None:
    ballast_held = H200 - 24 * GIB
    assert usable_card_bytes(H200, ballast_held, 24 * GIB) == 24 * GIB
    assert usable_card_bytes(H200, 0, None) == H200
    assert usable_card_bytes(H200, 131 * GIB, 24 * GIB) == 10 * GIB  # others leave less than configured
    assert usable_card_bytes(H200, 20 * GIB, None) == 121 * GIB  # a desktop on the card


def gpu(used: int = 0) -> GpuInfo:
    return GpuInfo(True, 0, "NVIDIA H200", "GPU-abc", H200, used)


def test_the_run_records_foreign_memory_before_its_processes_start() -> None:
    env: dict[str, str] = {}
    cfg = StudyConfig(study="s", gpu_memory="24GB", gpus=[0, 1])
    notes = record_foreign_memory(
        cfg, env, read_gpu=lambda i: gpu(), read_foreign=lambda i: [117 * GIB, 0][i]
    )
    assert env[FOREIGN_ENV] == f"{117 * GIB},0"
    assert foreign_from_env(0, env) == 117 * GIB and foreign_from_env(1, env) == 0
    assert notes == ["GPU 0: other processes hold 117.0 of 141.0 GB; trials are sized for a 24.0 GB card"]
    squeezed = record_foreign_memory(
        StudyConfig(study="s", gpu_memory="24GB"),
        {},
        read_gpu=lambda i: gpu(),
        read_foreign=lambda i: 131 * GIB,
    )
    assert squeezed == [
        "GPU 0: other processes hold 131.0 of 141.0 GB; trials are sized for a 10.0 GB card "
        "(--gpu-memory 24GB is more than that)"
    ]


def test_no_reading_on_cpu_without_a_gpu_or_once_recorded() -> None:
    def boom(i: int) -> int:
        raise AssertionError("must not read")

    off = GpuInfo(False, 0, "no GPU", "", 0, 0)
    assert record_foreign_memory(StudyConfig(study="s"), {}, read_gpu=lambda i: off, read_foreign=boom) == []
    cpu = StudyConfig(study="s", device="cpu")
    assert record_foreign_memory(cpu, {}, read_gpu=lambda i: gpu(), read_foreign=boom) == []
    env = {FOREIGN_ENV: "5"}
    assert (
        record_foreign_memory(StudyConfig(study="s"), env, read_gpu=lambda i: gpu(), read_foreign=boom) == []
    )
    assert env[FOREIGN_ENV] == "5"


def test_the_memory_policy_sizes_trials_for_the_configured_card(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(setup, "detect", lambda i: gpu(used=118 * GIB))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setenv(FOREIGN_ENV, str(H200 - 24 * GIB))
    cuda = torch.device("cuda")
    emulated = setup.memory_policy(StudyConfig(study="s", gpu_memory="24GB"), cuda)
    assert emulated.gpu_bytes == 24 * GIB and not emulated.simulated and emulated.real
    assert emulated.card == "NVIDIA H200"  # calibration evidence keyed by the card and its 24 GiB
    whole = setup.memory_policy(StudyConfig(study="s"), cuda)
    assert whole.gpu_bytes == 24 * GIB  # no --gpu-memory: what the foreign process leaves
    monkeypatch.delenv(FOREIGN_ENV)
    assert setup.memory_policy(StudyConfig(study="s"), cuda).gpu_bytes == H200


def test_the_ledger_capacity_is_the_configured_card_less_headroom(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(placement, "detect", lambda i: gpu(used=118 * GIB))
    monkeypatch.setenv(FOREIGN_ENV, str(H200 - 24 * GIB))
    cfg = StudyConfig(study="s", gpu_memory="24GB", output_dir=tmp_path)
    policy = MemoryPolicy(24 * GIB, int(1.5 * GIB))
    (ledger,) = placement.gpu_ledgers(cfg, policy, simulated=False)
    assert ledger.capacity_bytes == int(22.5 * GIB) and ledger.gpu_key == "GPU-abc"
    monkeypatch.setenv(FOREIGN_ENV, str(131 * GIB))  # others leave only 10 GiB: never more than that
    (ledger,) = placement.gpu_ledgers(cfg, policy, simulated=False)
    assert ledger.capacity_bytes == int(8.5 * GIB)


def test_the_status_line_shows_the_configured_card_not_the_device() -> None:
    cfg = StudyConfig(study="s", gpu_memory="24GB")
    held = H200 - 24 * GIB
    assert card_status(cfg, gpu(used=held + 6 * GIB), held) == " | GPU 6.0/24.0 GB (others 117.0 GB)"
    assert card_status(StudyConfig(study="s"), gpu(used=3 * GIB), 0) == " | GPU 3.0/141.0 GB"
    assert card_status(cfg, GpuInfo(False, 0, "no GPU", "", 0, 0), 0) == ""
