"""Optimizers, built one way for training and for the memory trace (which must model what training runs)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

OPTIMIZERS = ("adamw", "sgd", "adafactor")


def optimizer_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases and normalisation weights (frozen parameters excluded)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(
    name: str, params: Iterable[Any], lr: float, *, foreach: bool | None = None
) -> torch.optim.Optimizer:
    """The torch optimizer called ``name`` over ``params`` (tensors or groups); SGD with momentum 0.9.

    ``foreach=None`` lets torch choose (the fused-per-list kernels on CUDA, as the trace models with True).
    """
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, foreach=foreach)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, foreach=foreach)
    if name == "adafactor":
        return torch.optim.Adafactor(params, lr=lr, foreach=foreach)
    raise ValueError(f"optimizer {name!r} is not supported by the training loop yet")
