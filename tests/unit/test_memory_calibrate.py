"""Calibration from real evidence only: keyed by (model, card, precision, attention), a bounded robust factor,
injected / simulated / host-RAM / neighbour OOMs never change an estimate, process-safe JSON file."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from hpo.config.catalog import get_spec
from hpo.config.study import TrialConfig
from hpo.device.faults import FaultInjector, FaultPlan, SimulatedGpu
from hpo.device.oom import error_head
from hpo.memory.budget import MemoryRequest
from hpo.memory.calibrate import MAX_FACTOR, Calibration, calibration_key, oom_origin
from hpo.memory.estimate import estimate
from hpo.trial.sizing import MemoryPolicy, Sizer
from hpo.units import GIB

REQ = MemoryRequest(batch_size=16, max_length=256, precision="fp16")
H100 = calibration_key("bert-base-uncased", "NVIDIA H100 80GB HBM3", 80 * GIB, REQ)
L4 = calibration_key("bert-base-uncased", "NVIDIA L4", 24 * GIB, REQ)
REAL_OOM = (
    "CUDA out of memory. Tried to allocate 1.50 GiB. GPU 0 has a total capacity of 22.05 GiB of which "
    "1.02 GiB is free. Process 1234 has 20.9 GiB memory in use. 21.0 GiB allowed; Of the allocated memory ..."
)


def test_key_separates_cards_precisions_and_attention() -> None:
    assert H100 != L4
    assert (
        calibration_key(
            "bert-base-uncased", "NVIDIA H100 80GB HBM3", 80 * GIB, replace(REQ, precision="fp32")
        )
        != H100
    )
    assert (
        calibration_key(
            "bert-base-uncased", "NVIDIA H100 80GB HBM3", 80 * GIB, replace(REQ, attn_impl="eager")
        )
        != H100
    )
    assert (
        calibration_key("bert-base-uncased", "NVIDIA H100 80GB HBM3", 80 * GIB, replace(REQ, batch_size=2))
        == H100
    )


def test_an_oom_on_one_card_says_nothing_about_another(tmp_path: Path) -> None:
    cal = Calibration(tmp_path / "calibration.json")
    assert cal.record_oom(L4, REQ, 20 * GIB, 22 * GIB, "cuda")
    assert cal.known_oom(L4, REQ) and cal.factor(L4) > 1.0
    assert not cal.known_oom(H100, REQ) and cal.factor(H100) == 1.0
    assert cal.known_oom(L4, replace(REQ, batch_size=32))  # larger: also out
    assert not cal.known_oom(L4, replace(REQ, batch_size=8))  # smaller: may fit
    assert not cal.known_oom(L4, replace(REQ, grad_checkpointing=True))
    assert Calibration(tmp_path / "calibration.json").known_oom(L4, REQ)  # another process sees it


def test_factor_is_a_bounded_high_quantile_of_recent_ratios() -> None:
    cal = Calibration(None)
    for _ in range(19):
        cal.record_peak(H100, REQ, 10 * GIB, int(10.5 * GIB))
    cal.record_peak(H100, REQ, 10 * GIB, 40 * GIB)  # one wild outlier among twenty
    assert cal.factor(H100) == pytest.approx(1.05)
    cal.record_peak(L4, REQ, 10 * GIB, 100 * GIB)
    assert cal.factor(L4) == MAX_FACTOR  # bounded
    below = Calibration(None)
    below.record_peak(H100, REQ, 10 * GIB, 8 * GIB)
    assert below.factor(H100) == 1.0  # never scales down


def test_correct_marks_the_budget_and_scales_every_phase() -> None:
    cal = Calibration(None)
    budget = estimate(get_spec("bert-base-uncased"), replace(REQ, eval_batch_size=64))
    assert cal.correct(H100, budget) is budget
    cal.record_peak(H100, REQ, budget.device_total_bytes, int(budget.device_total_bytes * 1.2))
    fixed = cal.correct(H100, budget)
    assert fixed.device_total_bytes == pytest.approx(budget.device_total_bytes * 1.2, rel=1e-6)
    assert fixed.method == "analytic+calibrated" and fixed.factor == pytest.approx(1.2)
    assert fixed.phases["eval"] == pytest.approx(budget.phases["eval"] * 1.2, rel=1e-6)


def _injected_message() -> str:
    injector = FaultInjector(FaultPlan.from_dict({"oom_step": 0}), 0)
    with pytest.raises(torch.cuda.OutOfMemoryError) as info:
        injector.check(0, 0)
    return error_head(info.value, 2000)


def _simulated_message() -> str:
    with pytest.raises(torch.cuda.OutOfMemoryError) as info:
        SimulatedGpu(GIB, 2 * GIB).check(0, 0)
    return error_head(info.value, 2000)


def test_oom_origins() -> None:
    assert oom_origin(_injected_message(), on_cuda=True, simulated=False, neighbours=False) == "injected"
    assert oom_origin(_simulated_message(), on_cuda=False, simulated=True, neighbours=False) == "simulated"
    host = "DefaultCPUAllocator: can't allocate memory: you tried to allocate 4 GB"
    assert oom_origin(host, on_cuda=True, simulated=False, neighbours=False) == "host_ram"
    assert oom_origin(REAL_OOM, on_cuda=False, simulated=False, neighbours=False) == "host_ram"  # not a card
    no_cap = REAL_OOM.replace("21.0 GiB allowed; ", "")
    assert oom_origin(no_cap, on_cuda=True, simulated=False, neighbours=True) == "neighbour"
    assert oom_origin(REAL_OOM, on_cuda=True, simulated=False, neighbours=True) == "cuda"  # its own cap
    assert oom_origin(no_cap, on_cuda=True, simulated=False, neighbours=False) == "cuda"


def test_injected_simulated_host_and_neighbour_ooms_never_change_an_estimate(tmp_path: Path) -> None:
    spec = get_spec("bert-base-uncased")
    tcfg = TrialConfig(model="bert-base-uncased", learning_rate=1e-5, batch_size=16, max_length=256)
    cal = Calibration(tmp_path / "calibration.json")
    real_card = MemoryPolicy(24 * GIB, GIB, card="NVIDIA L4", resident_bytes=GIB)  # a worker beside another
    sizer = Sizer(real_card, num_labels=2, calibration=cal)
    before = sizer.estimate(spec, tcfg)
    assert sizer.over_budget(spec, tcfg, before) is None
    host = "DefaultCPUAllocator: can't allocate memory"
    neighbour = REAL_OOM.replace("21.0 GiB allowed; ", "")
    for message, on_cuda in [(_injected_message(), True), (host, True), (neighbour, True), (REAL_OOM, False)]:
        assert sizer.record_oom(spec, tcfg, before, message, on_cuda) != "cuda"
    simulated = Sizer(MemoryPolicy(24 * GIB, GIB, simulated=True), num_labels=2, calibration=cal)
    assert simulated.record_oom(spec, tcfg, before, _simulated_message(), False) == "simulated"
    after = sizer.estimate(spec, tcfg)
    assert after.device_total_bytes == before.device_total_bytes and after.method == "analytic"
    assert sizer.over_budget(spec, tcfg, after) is None  # nor is the config blocked as a known OOM
    assert not (tmp_path / "calibration.json").exists()  # nothing was recorded at all
    # a real CUDA OOM of its own (the message names its cap) is evidence
    assert sizer.record_oom(spec, tcfg, before, REAL_OOM, True) == "cuda"
    assert sizer.estimate(spec, tcfg).device_total_bytes > before.device_total_bytes
    assert sizer.over_budget(spec, tcfg, after) is not None


def test_measured_peaks_calibrate_only_on_a_real_card() -> None:
    from hpo.device.oom import PeakMemory

    spec = get_spec("bert-base-uncased")
    tcfg = TrialConfig(model="bert-base-uncased", learning_rate=1e-5, batch_size=16, max_length=256)
    cal = Calibration(None)
    simulated = Sizer(MemoryPolicy(24 * GIB, GIB, simulated=True), num_labels=2, calibration=cal)
    budget = simulated.estimate(spec, tcfg)
    peak = PeakMemory(
        allocated_bytes=budget.total_bytes * 2,
        reserved_bytes=budget.device_total_bytes * 2,
        nvml_process_bytes=None,
    )
    simulated.measured(spec, tcfg, budget, peak)
    assert cal._read()["keys"] == {}
    real = Sizer(MemoryPolicy(24 * GIB, GIB, card="NVIDIA L4"), num_labels=2, calibration=cal)
    real.measured(spec, tcfg, real.estimate(spec, tcfg), peak)
    assert real.estimate(spec, tcfg).factor > 1.0 and "calibrated" in real.estimate(spec, tcfg).method


def test_file_is_json_and_survives_damage(tmp_path: Path) -> None:
    path = tmp_path / "cal.json"
    path.write_text("{not json")
    cal = Calibration(path)
    assert cal.factor(H100) == 1.0
    cal.record_peak(H100, REQ, 10, 12)
    data = json.loads(path.read_text())
    assert data["version"] == 2 and data["keys"][H100]["peaks"][0]["measured"] == 12
    assert data["keys"][H100]["peaks"][0]["req"]["precision"] == "fp16"


def test_a_capped_workers_oom_proves_only_its_reservation() -> None:
    spec = get_spec("bert-base-uncased")
    tcfg = TrialConfig(model="bert-base-uncased", learning_rate=1e-5, batch_size=16, max_length=256)
    cal = Calibration(None)
    worker = Sizer(
        MemoryPolicy(80 * GIB, GIB, card="NVIDIA H100", capped=True), num_labels=2, calibration=cal
    )
    budget = worker.estimate(spec, tcfg)
    assert worker.record_oom(spec, tcfg, budget, REAL_OOM, True) == "cuda"
    assert worker.estimate(spec, tcfg).factor == pytest.approx(1.02)  # not 80 GB / estimate
