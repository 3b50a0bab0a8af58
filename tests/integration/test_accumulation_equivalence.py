"""The same effective batch trains the same model however it is split (16x1, 8x2, 4x4): lighter forms and
`--on-oom shrink` are the same training. Exact with dropout 0 for every loss, class weights and a partial
last window; with dropout the forms draw different masks, so they are equivalent only statistically."""

from __future__ import annotations

import pytest
import torch

from tests.integration.tiny_training import SPLITS, TRAIN, run
from tests.support import BASE

# 100 examples: 6 windows of 16 and a partial last window of 4 (one short micro-batch in every form)
PARTIAL = TRAIN + [e for e in SPLITS.train if e not in TRAIN][:4]
LOSSES = {
    "ce": {},
    "label_smoothing": {"label_smoothing": 0.1},
    "focal": {"focal_gamma": 2.0},
}


def forms(**update: object) -> list[tuple[dict[str, torch.Tensor], int]]:
    out = []
    for batch, accum in ((16, 1), (8, 2), (4, 4)):
        cfg = BASE.model_copy(update={"dropout": 0.0, "batch_size": batch, "grad_accum": accum, **update})
        weights, result, _ = run(cfg, epochs=2, examples=PARTIAL)
        out.append((weights, result.optimizer_steps))
    return out


@pytest.mark.parametrize("weighting", [False, True], ids=["unweighted", "class_weights"])
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_splits_of_one_window_train_the_same_weights(loss: str, weighting: bool) -> None:
    (ref, steps), *others = forms(loss=loss, class_weighting=weighting, **LOSSES[loss])
    assert steps == 2 * 7  # 6 full windows + 1 partial, per epoch
    for weights, other_steps in others:
        assert other_steps == steps
        worst = max(float((weights[k] - ref[k]).abs().max()) for k in ref)
        assert worst < 1e-5, f"{loss} weighted={weighting}: weights differ by {worst:.2e}"


def test_the_weights_do_move() -> None:
    """The comparison is not vacuous: a different effective batch trains different weights."""
    (ref, _), *_ = forms()
    other, _, _ = run(BASE.model_copy(update={"dropout": 0.0, "batch_size": 8}), epochs=2, examples=PARTIAL)
    assert max(float((other[k] - ref[k]).abs().max()) for k in ref) > 1e-3
