"""Classification losses: cross-entropy, label-smoothed cross-entropy and focal loss, with class weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017): cross-entropy scaled by (1 - p_t) ** gamma, optional class weights."""

    def __init__(self, gamma: float, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.gamma = gamma
        self.weight: torch.Tensor | None
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        log_probs = F.log_softmax(logits.float(), dim=-1)
        log_pt = log_probs.gather(1, labels.unsqueeze(1)).squeeze(1)
        loss = -((1.0 - log_pt.exp()) ** self.gamma) * log_pt
        if self.weight is not None:
            w = self.weight[labels]
            return (loss * w).sum() / w.sum()
        return loss.mean()


def class_weights(labels: list[int], num_labels: int) -> torch.Tensor:
    """'Balanced' weights: n_samples / (n_classes * count(class)); absent classes get weight 1."""
    counts = torch.bincount(torch.tensor(labels, dtype=torch.long), minlength=num_labels).float()
    weights = torch.where(
        counts > 0, len(labels) / (num_labels * counts.clamp(min=1)), torch.ones_like(counts)
    )
    return weights


def make_loss(
    kind: str, *, label_smoothing: float, focal_gamma: float, weight: torch.Tensor | None
) -> nn.Module:
    """The loss module for a trial's ``loss`` choice."""
    if kind == "ce":
        return nn.CrossEntropyLoss(weight=weight)
    if kind == "label_smoothing":
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)
    if kind == "focal":
        return FocalLoss(focal_gamma, weight)
    raise ValueError(f"unknown loss {kind!r}")
