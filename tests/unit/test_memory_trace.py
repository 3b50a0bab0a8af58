"""Meta-device trace: exact bookkeeping, agreement with the analytic estimate on tiny models, caching."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hpo.config.catalog import ModelSpec, get_spec
from hpo.errors import ConfigError
from hpo.memory.budget import MemoryRequest
from hpo.memory.estimate import estimate
from hpo.memory.trace import trace_estimate

# A small BERT built from dimensions only (no config.json, no weights).
SMALL_BERT = ModelSpec(
    name="small-bert",
    arch="bert",
    hidden_size=128,
    num_layers=4,
    num_heads=4,
    intermediate_size=512,
    vocab_size=4000,
    max_position_embeddings=512,
    type_vocab_size=2,
)
TOLERANCE = 0.15  # analytic vs trace on total_bytes; the achieved figures are in scripts/bench_estimator.py
VARIANTS = [
    {},
    {"precision": "fp16"},
    {"precision": "bf16_pure"},
    {"attn_impl": "eager"},
    {"grad_checkpointing": True},
    {"lora_r": 8},
    {"frozen_layers": 1},
    {"optimizer": "sgd"},
    {"optimizer": "adafactor"},
    {"optimizer": "adamw_8bit"},
    {"mode": "inference"},
]


@pytest.mark.parametrize("spec", [get_spec("hpo-tiny-bert"), SMALL_BERT], ids=["tiny-bert", "small-bert"])
@pytest.mark.parametrize(
    "variant", VARIANTS, ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items()) or "base"
)
def test_trace_agrees_with_analytic(spec: ModelSpec, variant: dict[str, object]) -> None:
    req = MemoryRequest(batch_size=8, max_length=128, **variant)  # type: ignore[arg-type]
    traced, analytic = trace_estimate(spec, req), estimate(spec, req)
    assert traced.method == "trace"
    assert abs(analytic.total_bytes / traced.total_bytes - 1) <= TOLERANCE


def test_trace_weights_gradients_and_optimizer_are_exact() -> None:
    req = MemoryRequest(batch_size=4, max_length=64)
    traced, analytic = trace_estimate(SMALL_BERT, req), estimate(SMALL_BERT, req)
    for name in ("gradients", "optimizer"):
        assert traced.components[name] == analytic.components[name], name
    buffers = 2 * 8 * SMALL_BERT.max_position_embeddings  # position_ids and token_type_ids (int64)
    assert traced.components["weights"] == analytic.components["weights"] + buffers


def test_trace_scales_with_batch_and_is_cached() -> None:
    req = MemoryRequest(batch_size=4, max_length=128)
    small = trace_estimate(SMALL_BERT, req)
    assert trace_estimate(SMALL_BERT, req) == small  # cached by config key
    assert trace_estimate(SMALL_BERT, replace(req, batch_size=16)).total_bytes > small.total_bytes


def test_trace_refuses_quantized_weights() -> None:
    with pytest.raises(ConfigError, match="analytic"):
        trace_estimate(SMALL_BERT, MemoryRequest(4, 64, lora_r=8, quant="4bit"))


def test_trace_decoder_by_extrapolation() -> None:
    # An 8-layer Llama-shaped decoder (GQA): traced with 2 and 3 layers and extrapolated.
    spec = ModelSpec(
        name="small-llama",
        arch="llama",
        hidden_size=256,
        num_layers=8,
        num_heads=8,
        num_kv_heads=2,
        intermediate_size=688,
        vocab_size=8000,
        max_position_embeddings=2048,
    )
    for variant in ({}, {"precision": "bf16"}, {"lora_r": 8, "lora_targets": ("q_proj", "v_proj")}):
        req = MemoryRequest(batch_size=4, max_length=256, **variant)  # type: ignore[arg-type]
        assert abs(estimate(spec, req).total_bytes / trace_estimate(spec, req).total_bytes - 1) <= TOLERANCE
