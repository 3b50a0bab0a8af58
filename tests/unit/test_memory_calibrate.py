"""Calibration: learned correction from measured peaks, OOM memory, process-safe JSON file."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from hpo.memory.budget import MemoryRequest
from hpo.memory.calibrate import Calibration
from hpo.memory.catalog import get_spec
from hpo.memory.estimate import estimate
from hpo.units import GIB

REQ = MemoryRequest(batch_size=16, max_length=256, precision="fp16")


def test_known_oom_blocks_near_identical_configs(tmp_path: Path) -> None:
    cal = Calibration(tmp_path / "calibration.json")
    assert not cal.known_oom("bert-base-uncased", REQ)
    cal.record_oom("bert-base-uncased", REQ, estimated_bytes=20 * GIB)
    assert cal.known_oom("bert-base-uncased", REQ)
    assert cal.known_oom("bert-base-uncased", replace(REQ, batch_size=32))  # larger: also out
    assert cal.known_oom("bert-base-uncased", replace(REQ, batch_size=32, max_length=128))  # same tokens
    assert not cal.known_oom("bert-base-uncased", replace(REQ, batch_size=8))  # smaller: may fit
    assert not cal.known_oom("bert-base-uncased", replace(REQ, grad_checkpointing=True))
    assert not cal.known_oom("bert-base-uncased", replace(REQ, precision="fp32"))
    assert not cal.known_oom("roberta-base", REQ)
    # a second process (a new object on the same file) sees it
    assert Calibration(tmp_path / "calibration.json").known_oom("bert-base-uncased", REQ)


def test_correct_scales_up_after_a_peak_above_the_estimate(tmp_path: Path) -> None:
    cal = Calibration(tmp_path / "cal.json")
    budget = estimate(get_spec("bert-base-uncased"), REQ)
    assert cal.correct("bert-base-uncased", REQ, budget) is budget
    cal.record_peak("bert-base-uncased", REQ, budget.device_total_bytes, int(budget.device_total_bytes * 1.2))
    fixed = cal.correct("bert-base-uncased", REQ, budget)
    assert fixed.device_total_bytes == pytest.approx(budget.device_total_bytes * 1.2, rel=1e-6)
    assert fixed.method == "analytic+calibrated"
    assert cal.factor("roberta-base") == 1.0


def test_peak_below_the_estimate_never_scales_down() -> None:
    cal = Calibration(None)  # in memory
    cal.record_peak("m", REQ, 10 * GIB, 8 * GIB)
    assert cal.factor("m") == 1.0


def test_oom_with_known_gpu_raises_the_estimate_above_the_card() -> None:
    cal = Calibration(None)
    cal.record_oom("m", REQ, estimated_bytes=20 * GIB, gpu_bytes=24 * GIB)
    assert cal.factor("m") * 20 * GIB > 24 * GIB


def test_file_is_json_and_survives_damage(tmp_path: Path) -> None:
    path = tmp_path / "cal.json"
    path.write_text("{not json")
    cal = Calibration(path)
    assert cal.factor("m") == 1.0
    cal.record_peak("m", REQ, 10, 12)
    data = json.loads(path.read_text())
    assert data["models"]["m"]["peaks"][0]["measured"] == 12
    assert data["models"]["m"]["peaks"][0]["req"]["precision"] == "fp16"
