"""The classify agent's metrics and its multi-label head.

Single-label: macro-F1 (optimised) and accuracy. Multi-label: macro-F1 (optimised) and micro-F1 over the
labels' 0/1 decisions. Macro-F1 averages over the classes (labels) that occur in the gold rows or the
predictions, as scikit-learn does for single-label data: a class absent from both has no F1 to average.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from hpo.train.losses import ClassificationLoss


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def macro_f1(gold: list[int], predicted: list[int]) -> float:
    """Mean per-class F1 over the classes in ``gold`` or ``predicted``."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} labels but {len(predicted)} predictions")
    pairs = list(zip(gold, predicted, strict=True))
    classes = sorted(set(gold) | set(predicted))
    if not classes:
        return 0.0
    scores = [
        _f1(
            sum(1 for y, p in pairs if y == c and p == c),
            sum(1 for y, p in pairs if y != c and p == c),
            sum(1 for y, p in pairs if y == c and p != c),
        )
        for c in classes
    ]
    return sum(scores) / len(scores)


def accuracy(gold: list[int], predicted: list[int]) -> float:
    """Share of rows predicted right."""
    return sum(1 for y, p in zip(gold, predicted, strict=True) if y == p) / len(gold) if gold else 0.0


def _counts(gold: list[list[int]], predicted: list[list[int]]) -> list[tuple[int, int, int]]:
    """(tp, fp, fn) per label of 0/1 rows."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} label rows but {len(predicted)} prediction rows")
    width = len(gold[0]) if gold else 0
    out = []
    for j in range(width):
        pairs = [(int(y[j]), int(p[j])) for y, p in zip(gold, predicted, strict=True)]
        out.append(
            (
                sum(1 for y, p in pairs if y and p),
                sum(1 for y, p in pairs if not y and p),
                sum(1 for y, p in pairs if y and not p),
            )
        )
    return out


def multilabel_macro_f1(gold: list[list[int]], predicted: list[list[int]]) -> float:
    """Mean F1 over the labels that are positive in some gold or predicted row."""
    scores = [_f1(*c) for c in _counts(gold, predicted) if any(c)]
    return sum(scores) / len(scores) if scores else 0.0


def multilabel_micro_f1(gold: list[list[int]], predicted: list[list[int]]) -> float:
    """F1 of all (row, label) decisions pooled."""
    counts = _counts(gold, predicted)
    return _f1(*(sum(c[i] for c in counts) for i in range(3))) if counts else 0.0


class SingleLabelScorer:
    """Macro-F1 (optimised) and accuracy of (class id, predicted class id) rows."""

    def __call__(self, gold: list[Any], predictions: list[Any]) -> float:
        return macro_f1([int(g) for g in gold], [int(p) for p in predictions])

    def metrics(self, gold: list[Any], predictions: list[Any]) -> dict[str, float]:
        g, p = [int(v) for v in gold], [int(v) for v in predictions]
        return {"macro_f1": macro_f1(g, p), "accuracy": accuracy(g, p)}


def _rows(values: list[Any]) -> list[list[int]]:
    return [[round(float(v)) for v in row] for row in values]


class MultiLabelScorer:
    """Macro-F1 (optimised) and micro-F1 of (0/1 label row, predicted 0/1 row) rows."""

    def __call__(self, gold: list[Any], predictions: list[Any]) -> float:
        return multilabel_macro_f1(_rows(gold), _rows(predictions))

    def metrics(self, gold: list[Any], predictions: list[Any]) -> dict[str, float]:
        g, p = _rows(gold), _rows(predictions)
        return {"macro_f1": multilabel_macro_f1(g, p), "micro_f1": multilabel_micro_f1(g, p)}


class MultiLabelHead:
    """Sequence classification with one independent sigmoid per label: BCE-with-logits.

    The loss terms of a row are its labels' BCE summed, its weight the number of labels, so a set of rows'
    loss (sum of terms / sum of weights) is the mean over all (row, label) decisions: what
    ``BCEWithLogitsLoss()`` gives, and what ``ClassificationLoss.terms_weight`` counts for an accumulation
    window. The trial's loss choice applies per label: ``label_smoothing`` pulls each 0/1 target towards 1/2
    by the sampled amount, ``focal`` multiplies each label's term by (1 - p_t) ** gamma. Class weights are
    refused by the agent (hpo.agents.classify). A label is predicted when its logit is above 0.
    """

    auto_class = "AutoModelForSequenceClassification"
    targets: tuple[str, ...] = ("labels",)

    def terms(
        self, loss_fn: ClassificationLoss, outputs: Any, targets: dict[str, torch.Tensor], attention_mask: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits, y = outputs.logits.float(), targets["labels"].float()
        goal = (
            y * (1 - loss_fn.label_smoothing) + loss_fn.label_smoothing / 2
            if loss_fn.kind == "label_smoothing"
            else y
        )
        per_label = F.binary_cross_entropy_with_logits(logits, goal, reduction="none")
        if loss_fn.kind == "focal":
            p_t = torch.where(y > 0.5, torch.sigmoid(logits), 1 - torch.sigmoid(logits))
            per_label = (1 - p_t) ** loss_fn.focal_gamma * per_label
        return per_label.sum(dim=-1), torch.full_like(per_label[:, 0], float(per_label.shape[-1]))

    def predictions(self, outputs: Any) -> list[Any]:
        predicted: list[Any] = (outputs.logits > 0).int().tolist()
        return predicted


MULTI_LABEL = MultiLabelHead()
