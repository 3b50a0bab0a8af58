"""`hpo estimate` core: table, JSON, max batch."""

from __future__ import annotations

import json

import pytest

from hpo.errors import ModelError
from hpo.memory.budget import MemoryRequest
from hpo.memory.report import run_estimate

REQ = MemoryRequest(batch_size=16, max_length=384, precision="fp16")


def test_table_lists_components_total_and_verdict() -> None:
    text, fits = run_estimate("bert-large-uncased", REQ, "24GB", "analytic", False, False, None)
    assert fits
    for word in (
        "weights",
        "gradients",
        "optimizer states",
        "activations",
        "CUDA context",
        "device total",
        "fits",
        "margin",
    ):
        assert word in text


def test_json_has_the_documented_keys() -> None:
    out = json.loads(run_estimate("bert-large-uncased", REQ, "24GB", "analytic", True, True, 2.0)[0])
    assert {"total_gb", "device_total_gb", "fits", "components", "method", "max_batch_size"} <= out.keys()
    assert out["fits"] is True and out["method"] == "analytic" and out["headroom_gb"] == 2.0
    assert out["components"]["weights"] > 1.0 and out["max_batch_size"] >= 16


def test_does_not_fit_and_max_batch_zero() -> None:
    req = MemoryRequest(batch_size=8, max_length=512)
    text, fits = run_estimate("Llama-3.1-70B", req, "24GB", "analytic", False, True, None)
    assert not fits and "does NOT fit" in text and "even batch size 1 does not fit" in text


def test_trace_method_and_max_batch_on_a_tiny_model() -> None:
    args = ("hpo-tiny-bert", MemoryRequest(8, 128), "2GB")
    traced = json.loads(run_estimate(*args, "trace", True, True, 0.3)[0])
    analytic = json.loads(run_estimate(*args, "analytic", True, True, 0.3)[0])
    assert traced["method"] == "trace" and traced["max_batch_size"] >= 8
    assert 0.7 <= traced["max_batch_size"] / analytic["max_batch_size"] <= 1.3


def test_unknown_model() -> None:
    with pytest.raises(ModelError):
        run_estimate("not-a-model", REQ, "24GB", "analytic", False, False, None)
