"""Exact gradient accumulation, at the tensor level: the real training loop on a 200-parameter model.

The promise behind lighter forms and ``--on-oom shrink``: one effective batch trains the same weights however
it is split into micro-batches (8x1, 4x2, 2x4), for every loss, with class weights and a partial last window.
The loop divides each micro-batch's loss terms by its *window's* weight total; dividing by the micro-batch's
own total (a per-micro-batch mean) breaks it, and this test fails then. The integration tier repeats the
check on tiny BERT (tests/integration/test_accumulation_equivalence.py).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from hpo.train.loop import train
from tests.support import BASE

N, LENGTH, VOCAB = 20, 6, 30  # 20 examples: windows of 8, 8 and a partial 4


class BagOfWords(nn.Module):
    """Masked mean of token embeddings, then a linear head: no dropout, no randomness after init."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(VOCAB, 5)
        self.head = nn.Linear(5, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> SimpleNamespace:
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (self.embed(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return SimpleNamespace(logits=self.head(pooled))


def data() -> dict[str, torch.Tensor]:
    """Variable-length, 1:3 imbalanced examples (so that class weights are not a no-op)."""
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(2, LENGTH + 1, (N,), generator=g)
    mask = (torch.arange(LENGTH).unsqueeze(0) < lengths.unsqueeze(1)).long()
    ids = torch.randint(1, VOCAB, (N, LENGTH), generator=g) * mask
    labels = (torch.arange(N) % 4 == 0).long()
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def weights_after(batch: int, accum: int, **update: Any) -> tuple[dict[str, torch.Tensor], int]:
    cfg = BASE.model_copy(update={"dropout": 0.0, "batch_size": batch, "grad_accum": accum, **update})
    model, d = BagOfWords(), data()
    result = train(
        model,
        cfg,
        d,
        d,
        score=lambda gold, pred: 0.0,
        num_labels=2,
        epochs=2,
        patience=9,
        device=torch.device("cpu"),
        seed=0,
    )
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, result.optimizer_steps


LOSSES = {"ce": {}, "label_smoothing": {"label_smoothing": 0.1}, "focal": {"focal_gamma": 2.0}}


@pytest.mark.parametrize("weighting", [False, True], ids=["unweighted", "class_weights"])
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_one_window_split_three_ways_trains_the_same_weights(loss: str, weighting: bool) -> None:
    update = {"loss": loss, "class_weighting": weighting, "learning_rate": 0.5, **LOSSES[loss]}
    ref, steps = weights_after(8, 1, **update)
    assert steps == 2 * 3  # two full windows and a partial one, per epoch
    for batch, accum in ((4, 2), (2, 4)):
        other, other_steps = weights_after(batch, accum, **update)
        assert other_steps == steps
        worst = max(float((other[k] - ref[k]).abs().max()) for k in ref)
        assert worst < 1e-6, f"{batch}x{accum} differs from 8x1 by {worst:.2e}"


def test_the_comparison_is_not_vacuous() -> None:
    """A different effective batch moves the weights elsewhere: the tolerance above can tell them apart."""
    ref, _ = weights_after(8, 1, learning_rate=0.5)
    other, _ = weights_after(4, 1, learning_rate=0.5)
    start = BagOfWords().state_dict()
    assert max(float((ref[k] - start[k]).abs().max()) for k in ref) > 1e-2
    assert max(float((other[k] - ref[k]).abs().max()) for k in ref) > 1e-3
