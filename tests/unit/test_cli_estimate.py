"""`hpo estimate` through the CLI: JSON, max batch, one-line errors."""

from __future__ import annotations

import json

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
