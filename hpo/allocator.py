"""The device-level memory model around a trial's tensors: the CUDA context and the caching allocator.

Kept as a leaf so that GPU profiles (hpo.gpu) can carry their own values and the estimators use them.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpo.units import MIB

CUDA_CONTEXT = 512 * MIB  # default CUDA context + kernels with lazy loading; GPU profiles state their own


@dataclass(frozen=True)
class Allocator:
    """The device-level model around the tensors: CUDA context and caching-allocator overhead.

    Overhead = ``transient`` x (activations + temporaries) + ``persistent`` x (weights, gradients, states),
    at least ``floor``: the caching allocator rounds blocks (512 B; 2 MiB above 1 MiB) and keeps freed
    blocks of varying sizes cached, so short-lived tensors fragment far more than long-lived ones. GPU
    profiles (configs/gpus/*.yaml) state the values with their sources; these defaults are the same:
    persistent 0.01: bert-large-uncased weights (1278 MiB) took 1288 MiB on a V100 (HF "Model training
    anatomy"); transient 0.30: the reserved-minus-tensors gap of the same page's training runs (see
    tests/data/published_peaks.csv; fitted there, so that table checks the fit, it does not validate it).
    """

    context_bytes: int = CUDA_CONTEXT
    transient: float = 0.30
    persistent: float = 0.01
    floor_bytes: int = 64 * MIB

    def overhead(self, comp: dict[str, int]) -> int:
        moving = comp.get("activations", 0) + comp.get("temporaries", 0)
        fixed = sum(comp.get(k, 0) for k in ("weights", "adapters", "gradients", "optimizer"))
        return max(self.floor_bytes, int(self.transient * moving + self.persistent * fixed))


DEFAULT_ALLOCATOR = Allocator()
