"""Losses as per-example terms: one batch gives torch's value, and any split of it sums to the same loss."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hpo.train.losses import ClassificationLoss, class_weights

torch.manual_seed(0)
LOGITS, LABELS = torch.randn(12, 3), torch.tensor([0, 1, 2, 0, 0, 1, 0, 0, 2, 0, 1, 0])
WEIGHT = class_weights(LABELS.tolist(), 3)


@pytest.mark.parametrize("weight", [None, WEIGHT], ids=["unweighted", "class_weights"])
@pytest.mark.parametrize("smoothing", [0.0, 0.15])
def test_one_batch_matches_torch_cross_entropy(weight: torch.Tensor | None, smoothing: float) -> None:
    kind = "label_smoothing" if smoothing else "ce"
    ours = ClassificationLoss(kind, label_smoothing=smoothing, weight=weight)(LOGITS, LABELS)
    torch_loss = nn.CrossEntropyLoss(weight=weight, label_smoothing=smoothing)(LOGITS, LABELS)
    assert torch.allclose(ours, torch_loss, atol=1e-6)


def test_focal_reduces_to_cross_entropy_at_gamma_zero_and_down_weights_easy_examples() -> None:
    ce = ClassificationLoss("ce", weight=WEIGHT)
    assert torch.allclose(
        ClassificationLoss("focal", focal_gamma=0.0, weight=WEIGHT)(LOGITS, LABELS), ce(LOGITS, LABELS)
    )
    assert ClassificationLoss("focal", focal_gamma=2.0)(LOGITS, LABELS) < ClassificationLoss("ce")(
        LOGITS, LABELS
    )


@pytest.mark.parametrize("kind", ["ce", "label_smoothing", "focal"])
def test_any_split_sums_to_the_whole(kind: str) -> None:
    loss = ClassificationLoss(kind, label_smoothing=0.1, focal_gamma=2.0, weight=WEIGHT)
    whole = loss(LOGITS, LABELS)
    total = sum(loss.terms_weight(LABELS[i : i + 5]) for i in (0, 5, 10))
    parts = sum(loss.terms(LOGITS[i : i + 5], LABELS[i : i + 5])[0].sum() / total for i in (0, 5, 10))
    assert torch.allclose(parts, whole, atol=1e-6)
    naive = sum(loss(LOGITS[i : i + 5], LABELS[i : i + 5]) for i in (0, 5, 10)) / 3  # mean of the means
    assert not torch.allclose(naive, whole, atol=1e-4)  # what the old loop did: not the same loss


def test_unknown_loss_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown loss"):
        ClassificationLoss("hinge")
