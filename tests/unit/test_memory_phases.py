"""Phases of a trial: the evaluation batch is chosen within the training peak and the estimate is the
maximum over phases (meta-device traces of large models: tests/integration/test_memory_phases_trace.py)."""

from __future__ import annotations

from dataclasses import replace

from hpo.config.catalog import get_spec
from hpo.device.allocator import DEFAULT_ALLOCATOR
from hpo.memory.budget import MemoryRequest
from hpo.memory.estimate import estimate, phase_tensors
from hpo.memory.phases import eval_batch_size, with_evaluation

# large encoder / long length / small training batch: evaluation at 64 needs far more than training


def _sized(comp: dict[str, int], phase: str = "train") -> int:
    return sum(comp.values()) + DEFAULT_ALLOCATOR.overhead(comp, phase)


def test_eval_batch_is_the_largest_within_the_training_peak() -> None:
    spec = get_spec("deberta-v3-base")
    req = MemoryRequest(batch_size=4, max_length=512, grad_checkpointing=True)
    chosen = eval_batch_size(spec, req, 64)
    train_peak = max(_sized(c, ph) for ph, c in phase_tensors(spec, req).items())
    assert _sized(phase_tensors(spec, replace(req, eval_batch_size=chosen))["eval"], "eval") <= train_peak
    assert _sized(phase_tensors(spec, replace(req, eval_batch_size=chosen + 1))["eval"], "eval") > train_peak
    light = replace(req, batch_size=16, grad_checkpointing=False)
    assert (
        eval_batch_size(spec, light, 64) == 64
    )  # an evaluation lighter than training keeps the study's batch


def test_peak_is_the_max_over_phases_and_json_phases_add_up() -> None:
    spec = get_spec("deberta-v3-base")
    req = MemoryRequest(batch_size=4, max_length=512, grad_checkpointing=True, eval_batch_size=64)
    b = estimate(spec, req)
    assert set(b.phases) == {"train", "optimizer_step", "eval"}
    assert b.device_total_bytes == max(b.phases.values()) + b.components["cuda_context"]
    assert b.phases["eval"] == max(b.phases.values())  # unchecked, evaluation at 64 dominates this config
    assert estimate(spec, replace(req, eval_batch_size=0)).device_total_bytes < b.device_total_bytes


def test_optimizer_step_phase_depends_on_foreach() -> None:
    spec = get_spec("bert-base-uncased")
    req = MemoryRequest(batch_size=1, max_length=64)
    foreach, loop = phase_tensors(spec, req), phase_tensors(spec, replace(req, foreach=False))
    assert foreach["optimizer_step"]["temporaries"] > loop["optimizer_step"]["temporaries"]
    assert "optimizer_step" not in phase_tensors(spec, replace(req, mode="inference"))


def test_inference_requests_have_no_evaluation_phase() -> None:
    spec = get_spec("bert-base-uncased")
    req = MemoryRequest(batch_size=8, max_length=128, mode="inference")
    assert with_evaluation(spec, req, 64) is req
