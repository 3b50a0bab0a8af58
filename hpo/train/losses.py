"""Classification losses (cross-entropy, label-smoothed cross-entropy, focal; optional class weights) as
per-example terms and weights.

A loss over any set of examples is ``sum(terms) / sum(weights)``: a micro-batch, an accumulation window or a
whole split. Training divides each micro-batch's term sum by its accumulation window's weight total, so
16x1, 8x2 and 4x4 compute the same gradient for the same examples (class weights and a partial last window
included); a single batch gives exactly what torch's ``CrossEntropyLoss(weight=, label_smoothing=)`` gives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("ce", "label_smoothing", "focal")


class ClassificationLoss(nn.Module):
    """One of LOSSES; ``terms`` gives per-example numerators and weights, ``forward`` their ratio."""

    def __init__(
        self,
        kind: str,
        *,
        label_smoothing: float = 0.0,
        focal_gamma: float = 2.0,
        weight: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if kind not in LOSSES:
            raise ValueError(f"unknown loss {kind!r}")
        self.kind, self.label_smoothing, self.focal_gamma = kind, label_smoothing, focal_gamma
        self.weight: torch.Tensor | None
        self.register_buffer("weight", weight, persistent=False)

    def terms(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(numerator, weight) per example: the loss of a set of examples is sum(num) / sum(weight)."""
        log_probs = F.log_softmax(logits.float(), dim=-1)
        classes = log_probs.shape[-1]
        w = self.weight if self.weight is not None else log_probs.new_ones(classes)
        w_y = w[labels]
        log_pt = log_probs.gather(1, labels.unsqueeze(1)).squeeze(1)
        if self.kind == "focal":
            return -w_y * (1.0 - log_pt.exp()) ** self.focal_gamma * log_pt, w_y
        num = -w_y * log_pt
        if self.kind == "label_smoothing":  # torch's formula: the smoothing term is weighted per class
            eps = self.label_smoothing
            num = (1.0 - eps) * num - eps / classes * (log_probs * w).sum(dim=-1)
        return num, w_y

    def terms_weight(self, labels: torch.Tensor) -> torch.Tensor:
        """The weight total of ``labels`` (known before the forward pass: the window's denominator)."""
        if self.weight is None:
            return torch.tensor(float(labels.numel()), device=labels.device)
        return self.weight[labels].sum()

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        num, weight = self.terms(logits, labels)
        return num.sum() / weight.sum()


def class_weights(labels: list[int], num_labels: int) -> torch.Tensor:
    """'Balanced' weights: n_samples / (n_classes * count(class)); absent classes get weight 1."""
    counts = torch.bincount(torch.tensor(labels, dtype=torch.long), minlength=num_labels).float()
    weights = torch.where(
        counts > 0, len(labels) / (num_labels * counts.clamp(min=1)), torch.ones_like(counts)
    )
    return weights


def make_loss(
    kind: str, *, label_smoothing: float, focal_gamma: float, weight: torch.Tensor | None
) -> ClassificationLoss:
    """The loss for a trial's ``loss`` choice."""
    return ClassificationLoss(kind, label_smoothing=label_smoothing, focal_gamma=focal_gamma, weight=weight)
