"""Phases of a trial: the evaluation batch is chosen within the training peak, the estimate is the maximum
over phases, and for configs where evaluation at the study's batch would dominate, the meta-device trace of
the evaluation that runs stays within the estimate and within what the ledger reserves for the trial."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hpo.allocator import DEFAULT_ALLOCATOR
from hpo.config import TrialConfig
from hpo.memory.budget import MemoryRequest
from hpo.memory.catalog import get_spec
from hpo.memory.estimate import estimate, phase_tensors
from hpo.memory.phases import eval_batch_size, with_evaluation
from hpo.memory.trace import trace_estimate
from hpo.trial.sizing import MemoryPolicy, Sizer
from hpo.units import GIB

# large encoder / long length / small training batch: evaluation at 64 needs far more than training
EVAL_HEAVY = [
    (
        "deberta-v3-base",
        TrialConfig(model="m", learning_rate=1e-5, batch_size=4, max_length=512, grad_checkpointing=True),
    ),
    (
        "deberta-v3-large",
        TrialConfig(model="m", learning_rate=1e-5, batch_size=1, max_length=256, grad_checkpointing=True),
    ),
]


def _sized(comp: dict[str, int]) -> int:
    return sum(comp.values()) + DEFAULT_ALLOCATOR.overhead(comp)


@pytest.mark.parametrize("model,tcfg", EVAL_HEAVY, ids=["base-len512", "large-len256"])
def test_eval_at_the_study_batch_would_dominate_the_estimate_covers_what_runs(
    model: str, tcfg: TrialConfig
) -> None:
    spec = get_spec(model)
    tcfg = tcfg.model_copy(update={"model": model})
    sizer = Sizer(MemoryPolicy(80 * GIB, 0, simulated=True), num_labels=2, eval_batch_size=64)
    plain = sizer.request(spec, tcfg)
    at_64 = phase_tensors(spec, replace(plain, eval_batch_size=64))
    assert _sized(at_64["eval"]) > max(_sized(at_64["train"]), _sized(at_64["optimizer_step"]))  # dominates
    chosen = sizer.eval_batch(spec, tcfg)
    assert 1 <= chosen < 64
    budget = sizer.estimate(spec, tcfg)
    assert max(budget.phases, key=lambda ph: budget.phases[ph]) != "eval"  # evaluation no longer the peak
    traced = trace_estimate(spec, plain)  # the meta-device run of training + evaluation at the chosen batch
    assert traced.phases["eval"] <= budget.phases["eval"] <= budget.device_total_bytes
    # the worker's ledger reserves the device total less its own context, held for the whole trial
    reservation = budget.device_total_bytes - budget.components["cuda_context"]
    assert traced.phases["eval"] <= reservation


def test_eval_batch_is_the_largest_within_the_training_peak() -> None:
    spec = get_spec("deberta-v3-base")
    req = MemoryRequest(batch_size=4, max_length=512, grad_checkpointing=True)
    chosen = eval_batch_size(spec, req, 64)
    train_peak = max(_sized(c) for c in phase_tensors(spec, req).values())
    assert _sized(phase_tensors(spec, replace(req, eval_batch_size=chosen))["eval"]) <= train_peak
    assert _sized(phase_tensors(spec, replace(req, eval_batch_size=chosen + 1))["eval"]) > train_peak
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
