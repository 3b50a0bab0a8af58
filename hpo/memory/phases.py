"""The phases of a trial (training step, optimizer step, evaluation) and the evaluation batch size.

Evaluation runs under no_grad with the optimizer state still resident, at a batch of its own. The batch is
chosen so that evaluation never needs more than the training peak: the largest batch up to the configured one
whose evaluation phase (tensors + allocator overhead) fits under the training and optimizer-step phases. When
even batch 1 does not (a frozen model with a tiny training batch), batch 1 runs and the estimate, the maximum
over phases, reserves for it.
"""

from __future__ import annotations

from dataclasses import replace

from hpo.config.catalog import ModelSpec
from hpo.device.allocator import DEFAULT_ALLOCATOR, Allocator
from hpo.memory.budget import MemoryRequest
from hpo.memory.estimate import phase_tensors


def _sized(comp: dict[str, int], alloc: Allocator, phase: str) -> int:
    return sum(comp.values()) + alloc.overhead(comp, phase)


def eval_batch_size(
    spec: ModelSpec, req: MemoryRequest, configured: int, alloc: Allocator = DEFAULT_ALLOCATOR
) -> int:
    """Largest evaluation batch <= ``configured`` whose phase stays within the training peak (at least 1)."""
    training = phase_tensors(spec, replace(req, eval_batch_size=0))
    ceiling = max(_sized(c, alloc, ph) for ph, c in training.items())

    def fits(batch: int) -> bool:
        eval_phase = phase_tensors(spec, replace(req, eval_batch_size=batch))["eval"]
        return _sized(eval_phase, alloc, "eval") <= ceiling

    lo, hi = 1, configured  # memory grows with the batch: binary search for the last one that fits
    if fits(hi):
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def with_evaluation(
    spec: ModelSpec, req: MemoryRequest, configured: int, alloc: Allocator = DEFAULT_ALLOCATOR
) -> MemoryRequest:
    """``req`` with its evaluation phase at the chosen batch (inference requests are returned unchanged)."""
    if req.mode != "train" or configured < 1:
        return req
    return replace(req, eval_batch_size=eval_batch_size(spec, req, configured, alloc))
