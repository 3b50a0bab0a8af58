"""Optimizers, built one way for training and for the memory trace (which must model what training runs)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

OPTIMIZERS = ("adamw", "sgd", "adafactor", "adamw_8bit")


def eight_bit_available() -> bool:
    """bitsandbytes' 8-bit AdamW needs the library and a CUDA device."""
    import importlib.util

    return importlib.util.find_spec("bitsandbytes") is not None and torch.cuda.is_available()


def optimizer_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases and normalisation weights (frozen parameters excluded)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _all_on_cpu(params: list[Any]) -> bool:
    """True if every tensor of ``params`` (tensors or param groups) is a CPU tensor (and there is one)."""
    tensors = [t for p in params for t in (p["params"] if isinstance(p, dict) else [p])]
    return bool(tensors) and all(t.device.type == "cpu" for t in tensors)


def build_optimizer(
    name: str, params: Iterable[Any], lr: float, *, foreach: bool | None = None
) -> torch.optim.Optimizer:
    """The optimizer called ``name`` over ``params`` (tensors or groups): torch AdamW, SGD (momentum 0.9),
    transformers' Adafactor (external learning rate, no relative step; one parameter at a time) or
    bitsandbytes' AdamW8bit (needs the library and CUDA: ConfigError otherwise).

    ``foreach=None`` lets torch choose on CUDA (the fused-per-list kernels, as the trace models with True);
    on CPU AdamW and SGD run fused (one kernel per parameter, no temporaries), as HF Trainer's default
    ``adamw_torch_fused`` does. CUDA keeps foreach: that is what the H200 measurements in tests/data/gpu
    checked the estimate's optimizer phase against.
    """
    params = list(params)
    fused = True if foreach is None and _all_on_cpu(params) else None
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, foreach=foreach, fused=fused)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, foreach=foreach, fused=fused)
    if name == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(params, lr=lr, scale_parameter=False, relative_step=False, warmup_init=False)
    if name == "adamw_8bit":
        if not eight_bit_available():
            from hpo.errors import ConfigError

            raise ConfigError("adamw_8bit needs bitsandbytes and a CUDA device", "use adamw or adafactor")
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=lr)  # type: ignore[no-any-return]
    raise ValueError(f"optimizer {name!r} is not supported by the training loop")
