"""`hpo estimate` through the CLI: JSON, max batch, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hpo.commands import app

runner = CliRunner()


def test_estimate_json_and_max_batch() -> None:
    res = runner.invoke(
        app,
        [
            "estimate",
            "--model",
            "bert-large-uncased",
            "--batch-size",
            "16",
            "--max-length",
            "384",
            "--precision",
            "fp16",
            "--gpu-memory",
            "24GB",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert {"total_gb", "device_total_gb", "fits", "components", "method"} <= set(data)
    assert data["device_total_gb"] > data["total_gb"] > data["components"]["weights"]
    res = runner.invoke(
        app,
        [
            "estimate",
            "--model",
            "bert-base-uncased",
            "--max-length",
            "128",
            "--gpu-memory",
            "24GB",
            "--max-batch",
        ],
    )
    assert res.exit_code == 0, res.output
    assert any(ch.isdigit() for ch in res.output)


def test_estimate_rejects_unknown_model_and_bad_precision() -> None:
    res = runner.invoke(app, ["estimate", "--model", "nope-xyz"])
    assert res.exit_code == 2 and "unknown model" in res.output
    res = runner.invoke(app, ["estimate", "--model", "bert-base-uncased", "--precision", "fp8"])
    assert res.exit_code == 2 and "precision" in res.output


def test_estimate_prints_phases_and_json_has_them() -> None:
    args = ["estimate", "--model", "deberta-v3-base", "--batch-size", "4", "--max-length", "512"]
    args += ["--grad-checkpointing", "--gpu-memory", "24GB"]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    phases = out["phases"]
    assert set(phases) == {"train", "eval", "optimizer_step"}
    assert out["device_total_gb"] == pytest.approx(
        max(phases.values()) + out["components"]["cuda_context"], abs=1e-3
    )
    assert 1 <= out["request"]["eval_batch_size"] < 64  # capped within the training peak
    text = runner.invoke(app, args).output
    assert "optimizer step" in text and "evaluation (batch" in text and "<- peak" in text
    assert "calibrated" not in text


def test_estimate_shows_a_calibration_learned_on_that_card(tmp_path: Path) -> None:
    from hpo.device.gpu import load_profile
    from hpo.memory.budget import MemoryRequest
    from hpo.memory.calibrate import Calibration, calibration_key

    req = MemoryRequest(batch_size=8, max_length=128)
    key = calibration_key("bert-base-uncased", "NVIDIA L4", load_profile("24GB").memory_bytes, req)
    Calibration(tmp_path / "cal.json").record_peak(key, req, 10 * 2**30, 12 * 2**30)
    args = ["estimate", "--model", "bert-base-uncased", "--batch-size", "8", "--max-length", "128"]
    args += ["--gpu-memory", "24GB", "--calibration", str(tmp_path / "cal.json")]
    other = runner.invoke(app, [*args, "--card", "NVIDIA A10", "--json"])
    assert json.loads(other.output)["calibration_factor"] == 1.0  # another card: no evidence
    res = runner.invoke(app, [*args, "--card", "NVIDIA L4"])
    assert res.exit_code == 0, res.output
    assert "calibrated: x1.200" in res.output and "analytic+calibrated" in res.output
