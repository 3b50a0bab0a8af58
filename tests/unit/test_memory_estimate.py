"""Analytic estimator: hand-computed components, monotonicity, validation, speed."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from hpo.config.catalog import get_spec
from hpo.errors import ConfigError, ModelError
from hpo.memory.budget import CUBLAS_WORKSPACE, MemoryRequest, fits
from hpo.memory.estimate import estimate, max_batch_size, param_counts
from hpo.units import GIB

BASE = get_spec("bert-base-uncased")
REQ = MemoryRequest(batch_size=16, max_length=256)


def test_bert_base_weights_grads_optimizer_fp32() -> None:
    # bert-base classifier: 108,891,648 backbone + pooler (768*768+768) + classifier (768*2+2)
    params = 108_891_648 + 768 * 768 + 768 + 768 * 2 + 2
    b = estimate(BASE, REQ)
    assert param_counts(BASE, REQ).total == params
    assert b.components["weights"] == params * 4
    assert b.components["gradients"] == params * 4
    assert b.components["optimizer"] == params * 8  # AdamW: exp_avg + exp_avg_sq in fp32
    assert b.components["adapters"] == 0


def test_bert_base_activation_formula_by_hand() -> None:
    # fp32, SDPA, dropout: per token and layer 34h + 8i + 16 (LN stats) + lse (4 * heads) + 4s (mask bias)
    h, i, s, tokens = 768, 3072, 256, 16 * 256
    per_layer = 34 * h + 8 * i + 16 + 4 * 12 + 4 * s
    embeddings, head = 4 * h + 8 + h, 2 * 4 * h
    b = estimate(BASE, REQ)
    assert b.components["activations"] == tokens * (12 * per_layer + embeddings + head)


def test_precision_and_optimizer_bytes() -> None:
    params = param_counts(BASE, REQ).total
    pure = estimate(BASE, replace(REQ, precision="bf16_pure"))
    assert pure.components["weights"] == params * 2 and pure.components["optimizer"] == params * 4
    assert estimate(BASE, replace(REQ, optimizer="sgd")).components["optimizer"] == params * 4
    eight = estimate(BASE, replace(REQ, optimizer="adamw_8bit")).components["optimizer"]
    assert params * 2 <= eight < params * 2.2
    ada = estimate(BASE, replace(REQ, optimizer="adafactor")).components["optimizer"]
    assert ada < params * 0.1  # factored second moments only
    # autocast keeps fp32 master weights: same weight bytes as fp32, fewer activation bytes
    amp = estimate(BASE, replace(REQ, precision="fp16"))
    assert amp.components["weights"] == params * 4
    assert amp.components["activations"] < estimate(BASE, REQ).components["activations"]


def test_device_total_adds_context_and_overhead() -> None:
    b = estimate(BASE, REQ)
    assert b.total_bytes == sum(b.components[k] for k in list(b.components)[:6])
    assert (
        b.device_total_bytes
        == b.total_bytes + b.components["cuda_context"] + b.components["allocator_overhead"]
    )
    assert b.components["temporaries"] >= CUBLAS_WORKSPACE
    assert b.method == "analytic" and b.total_gb == pytest.approx(b.total_bytes / GIB)


@pytest.mark.parametrize("model", ["hpo-tiny-bert", "bert-base-uncased", "deberta-v3-base", "Llama-3-8B"])
def test_monotone(model: str) -> None:
    spec = get_spec(model)
    for req in [REQ, replace(REQ, precision="fp16"), replace(REQ, lora_r=8), replace(REQ, attn_impl="eager")]:
        total = estimate(spec, req).total_bytes
        assert estimate(spec, replace(req, batch_size=32)).total_bytes >= total
        assert estimate(spec, replace(req, max_length=512)).total_bytes >= total
        assert estimate(spec, replace(req, grad_checkpointing=True)).total_bytes <= total
        assert estimate(spec, replace(req, frozen_layers=1)).total_bytes <= total
        assert estimate(spec, replace(req, mode="inference")).total_bytes < total
    full, lora = estimate(spec, REQ), estimate(spec, replace(REQ, lora_r=16))
    for name in ("gradients", "optimizer"):
        assert lora.components[name] < full.components[name]
    assert lora.components["adapters"] > 0


def test_quantized_weights_are_smaller() -> None:
    spec = get_spec("Llama-2-7B")
    req = MemoryRequest(2, 512, precision="bf16_pure", lora_r=16, lora_targets=("q_proj", "v_proj"))
    full = estimate(spec, req).components["weights"]
    assert estimate(spec, replace(req, quant="8bit")).components["weights"] < full * 0.6
    assert estimate(spec, replace(req, quant="4bit")).components["weights"] < full * 0.35


def test_gradient_accumulation_is_not_an_input() -> None:
    # By construction: the estimate is the peak of an accumulation micro-step, valid for any grad_accum.
    assert "grad_accum" not in MemoryRequest.__dataclass_fields__


@pytest.mark.parametrize(
    "bad",
    [
        {"precision": "fp8"},
        {"optimizer": "lion"},
        {"batch_size": 0},
        {"quant": "3bit", "lora_r": 8},
        {"quant": "4bit"},
        {"attn_impl": "xformers"},
    ],
)
def test_invalid_request(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        MemoryRequest(**{"batch_size": 8, "max_length": 128, **bad})  # type: ignore[arg-type]


def test_unknown_model_is_an_error() -> None:
    with pytest.raises(ModelError, match="unknown model"):
        get_spec("no-such-model-xyz")


def test_fits_and_max_batch() -> None:
    b = estimate(BASE, REQ)
    ok, margin = fits(b, 24 * GIB, int(1.5 * GIB))
    assert ok and margin == 24 * GIB - int(1.5 * GIB) - b.device_total_bytes
    assert not fits(b, b.device_total_bytes, 1)[0]
    best = max_batch_size(BASE, REQ, 24 * GIB, int(1.5 * GIB))
    assert fits(estimate(BASE, replace(REQ, batch_size=best)), 24 * GIB, int(1.5 * GIB))[0]
    assert not fits(estimate(BASE, replace(REQ, batch_size=best + 1)), 24 * GIB, int(1.5 * GIB))[0]
    assert max_batch_size(get_spec("Llama-3.1-70B"), REQ, 24 * GIB, 0) == 0


def test_estimate_is_fast() -> None:
    spec = get_spec("bert-large-uncased")
    start = time.perf_counter()
    for _ in range(20):
        estimate(spec, REQ)
    assert (time.perf_counter() - start) / 20 < 0.05  # loose; the bench measures the real figure


def test_optimizers_as_training_builds_them() -> None:
    import torch
    from transformers.optimization import Adafactor

    from hpo.errors import ConfigError
    from hpo.train.optim import build_optimizer, eight_bit_available

    params = [torch.nn.Parameter(torch.ones(4, 3))]
    assert isinstance(build_optimizer("adafactor", params, 1e-3), Adafactor)  # transformers' implementation
    if not eight_bit_available():  # no bitsandbytes or no CUDA: a clear error, not a crash mid-training
        with pytest.raises(ConfigError, match="bitsandbytes"):
            build_optimizer("adamw_8bit", params, 1e-3)


def test_gpu_check_on_a_cpu_machine_says_so_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import runpy

    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA machine runs the real grid")
    script = Path(__file__).resolve().parents[2] / "scripts" / "bench_estimator.py"
    main = runpy.run_path(str(script))["main"]
    out = tmp_path / "gpu-check.csv"
    assert main(["--gpu-check", "--out", str(out), "--calibration", str(tmp_path / "cal.json")]) == 0
    assert "no CUDA device" in capsys.readouterr().out
    assert not out.exists()
