"""For configs where evaluation at the study's batch would dominate (DeBERTa, long sequences), the meta-device
trace of the evaluation that runs stays within the estimate and within what the ledger reserves for the
trial (seconds of tracing each, so here rather than in the unit tier)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hpo.config.catalog import get_spec
from hpo.config.study import TrialConfig
from hpo.device.allocator import DEFAULT_ALLOCATOR
from hpo.memory.estimate import phase_tensors
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


def _sized(comp: dict[str, int], phase: str = "train") -> int:
    return sum(comp.values()) + DEFAULT_ALLOCATOR.overhead(comp, phase)


@pytest.mark.parametrize("model,tcfg", EVAL_HEAVY, ids=["base-len512", "large-len256"])
def test_eval_at_the_study_batch_would_dominate_the_estimate_covers_what_runs(
    model: str, tcfg: TrialConfig
) -> None:
    spec = get_spec(model)
    tcfg = tcfg.model_copy(update={"model": model})
    sizer = Sizer(MemoryPolicy(80 * GIB, 0, simulated=True), num_labels=2, eval_batch_size=64)
    plain = sizer.request(spec, tcfg)
    at_64 = phase_tensors(spec, replace(plain, eval_batch_size=64))
    assert _sized(at_64["eval"], "eval") > max(
        _sized(at_64["train"]), _sized(at_64["optimizer_step"])
    )  # dominates
    chosen = sizer.eval_batch(spec, tcfg)
    assert 1 <= chosen < 64
    budget = sizer.estimate(spec, tcfg)
    assert max(budget.phases, key=lambda ph: budget.phases[ph]) != "eval"  # evaluation no longer the peak
    traced = trace_estimate(spec, plain)  # the meta-device run of training + evaluation at the chosen batch
    assert traced.phases["eval"] <= budget.phases["eval"] <= budget.device_total_bytes
    # the worker's ledger reserves the device total less its own context, held for the whole trial
    reservation = budget.device_total_bytes - budget.components["cuda_context"]
    assert traced.phases["eval"] <= reservation
