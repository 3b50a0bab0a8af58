"""Optimizers as the meta-device trace runs them: torch's (foreach, as on CUDA); 8-bit Adam as a model."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hpo.train.optim import build_optimizer


class _Adam8bit(torch.optim.Optimizer):
    """Memory model of bitsandbytes AdamW8bit: uint8 moments + fp32 absmax per 256 (fused, no temporaries)."""

    def __init__(self, params: Any) -> None:
        super().__init__(params, {})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for p in (p for group in self.param_groups for p in group["params"]):
            if p.grad is None or self.state[p]:
                continue
            big = p.numel() >= 4096  # smaller tensors keep 32-bit states
            for name in ("exp_avg", "exp_avg_sq"):
                self.state[p][name] = torch.zeros_like(p, dtype=torch.uint8 if big else torch.float32)
                if big:
                    self.state[p][name + "_absmax"] = p.new_zeros(-(-p.numel() // 256), dtype=torch.float32)


def make_optimizer(name: str, params: list[nn.Parameter], foreach: bool = True) -> torch.optim.Optimizer:
    """The optimizer as training builds it (foreach: the CUDA default); 8-bit Adam as a memory model."""
    return _Adam8bit(params) if name == "adamw_8bit" else build_optimizer(name, params, 1e-5, foreach=foreach)
