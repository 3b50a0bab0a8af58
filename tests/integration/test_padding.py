"""Dynamic padding trains the same model as padding every batch to max_length (pads are masked out), and
length grouping keeps elastic forms equivalent (the windows depend on the effective batch only)."""

from __future__ import annotations

from tests.integration.tiny_training import run
from tests.support import BASE


def test_dynamic_padding_trains_the_same_weights_as_fixed_padding() -> None:
    cfg = BASE.model_copy(update={"dropout": 0.0, "max_length": 64})
    dynamic, result, _ = run(cfg, epochs=1)
    fixed, fixed_result, _ = run(cfg, epochs=1, padding="max_length")
    worst = max(float((dynamic[k] - fixed[k]).abs().max()) for k in dynamic)
    assert worst < 1e-5 and result.best_metric == fixed_result.best_metric


def test_length_grouping_keeps_split_windows_equivalent_and_changes_the_order() -> None:
    cfg = BASE.model_copy(update={"dropout": 0.0})
    grouped, _, _ = run(cfg, epochs=1, group_by_length=True)
    split, _, _ = run(
        cfg.model_copy(update={"batch_size": 4, "grad_accum": 4}), epochs=1, group_by_length=True
    )
    plain, _, _ = run(cfg, epochs=1)
    assert max(float((grouped[k] - split[k]).abs().max()) for k in grouped) < 1e-5
    assert max(float((grouped[k] - plain[k]).abs().max()) for k in grouped) > 1e-4  # it does reorder
