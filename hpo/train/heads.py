"""Model heads as the training loop sees them: which HF auto class, which tensors are targets, the loss terms
of a batch and the predictions a metric reads.

The loop is head-agnostic: it pops ``targets`` off each batch, runs the model, and asks the head for the
per-example loss terms (``hpo.train.losses``: a loss over any set of examples is sum(terms) / sum(weights))
and for one prediction per batch row. An agent names its head (``hpo.agents``); the metric turns the rows'
predictions into a score.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from hpo.train.losses import ClassificationLoss

Tensors = dict[str, torch.Tensor]
# A padded position's logit: below any real one, so pads take no probability (fixed and dynamic padding
# then give the same span loss).
_MASKED = -1.0e4


class Head(Protocol):
    """How one kind of HF head is trained and read."""

    auto_class: str  # the transformers Auto* class build_model instantiates
    targets: tuple[str, ...]  # encoded tensors the loss reads (never model inputs); targets[0] sizes a batch

    def terms(
        self, loss_fn: ClassificationLoss, outputs: Any, targets: Tensors, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(numerator, weight) per batch row."""
        ...

    def predictions(self, outputs: Any) -> list[Any]:
        """One prediction per batch row (what the agent's scorer reads)."""
        ...


class ClassificationHead:
    """Sequence classification: logits over ``num_labels`` classes, one label per example."""

    auto_class = "AutoModelForSequenceClassification"
    targets: tuple[str, ...] = ("labels",)

    def terms(
        self, loss_fn: ClassificationLoss, outputs: Any, targets: Tensors, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return loss_fn.terms(outputs.logits, targets["labels"])

    def predictions(self, outputs: Any) -> list[Any]:
        predicted: list[Any] = outputs.logits.argmax(dim=-1).tolist()
        return predicted


class SpanHead:
    """Extractive QA: a start and an end logit for every token of a window; position 0 (CLS) = no answer.

    The loss of a window is the mean of the start and end losses, each the chosen loss (ce, label smoothing,
    focal) over the window's positions, padded positions masked out. Class weights have no meaning over
    positions (the agent refuses them). A prediction is the window's (start_logits, end_logits) on the CPU,
    cut to the batch width; the agent picks spans across an example's windows.

    Memory: no head-kind parameter in hpo.memory. The QA head is one Linear(hidden, 2) over every token and
    has no pooler, so its parameters are hidden*hidden fewer than the classifier's the estimate counts (an
    over-estimate of 0.15M parameters for MiniLM, 0.6M for BERT-base); its extra activations are the
    (batch, length, 2) logits and their softmax: 2/hidden of one (batch, length, hidden) activation, of
    which every layer keeps more than ten. Both are far below the estimator's measured error.
    """

    auto_class = "AutoModelForQuestionAnswering"
    targets: tuple[str, ...] = ("start_positions", "end_positions")

    def terms(
        self, loss_fn: ClassificationLoss, outputs: Any, targets: Tensors, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pad = attention_mask == 0
        start = outputs.start_logits.float().masked_fill(pad, _MASKED)
        end = outputs.end_logits.float().masked_fill(pad, _MASKED)
        start_num, weight = loss_fn.terms(start, targets["start_positions"])
        end_num, _ = loss_fn.terms(end, targets["end_positions"])
        return (start_num + end_num) / 2, weight

    def predictions(self, outputs: Any) -> list[Any]:
        start, end = outputs.start_logits.detach().float().cpu(), outputs.end_logits.detach().float().cpu()
        return list(zip(start, end, strict=True))


CLASSIFICATION = ClassificationHead()
SPAN = SpanHead()
