"""Host-RAM estimate of one trial and the host's room: what keeps PAR workers clear of the OOM killer.

- CPU training holds on the host what a GPU run holds on the card (weights, gradients, optimizer state,
  activations, temporaries). It is estimated with eager attention: CPU attention keeps the full attention
  matrices for the backward pass (all-MiniLM-L6-v2, batch 32, length 512: 8.3 GiB estimated here against
  the ~10 GB RSS per worker measured in issue 15, baseline included), plus a malloc overhead.
- GPU training holds the model while it loads (the state dict and the module, fp32) and the tokenized data.
- Each worker process itself (Python, torch, transformers, the encoded data) is :data:`PROCESS_BASELINE`:
  measured 0.28 GiB RSS after setup (torch 2.13 CPU build, transformers 5), rounded up for MLflow and data.
"""

from __future__ import annotations

from dataclasses import replace

import psutil

from hpo.memory.budget import MemoryRequest
from hpo.memory.catalog import ModelSpec
from hpo.memory.estimate import estimate
from hpo.units import GIB, MIB

PROCESS_BASELINE = 512 * MIB
CPU_MALLOC_FRACTION = 0.10  # glibc arenas and fragmentation on top of the live tensors
HEADROOM_FRACTION = 0.10  # of the host's RAM kept free for the OS, the launcher and page cache
FP32 = 4


def host_peak_bytes(spec: ModelSpec, req: MemoryRequest, on_gpu: bool) -> int:
    """A trial's host-RAM peak beyond its worker's :data:`PROCESS_BASELINE`."""
    if on_gpu:
        return 2 * spec.params * FP32  # state dict + module while the weights load, before .to(cuda)
    cpu = estimate(spec, replace(req, attn_impl="eager", precision="fp32"))
    return int(cpu.total_bytes * (1 + CPU_MALLOC_FRACTION))


def host_headroom(capacity_bytes: int) -> int:
    """RAM a host admission leaves free: a tenth of what it may use."""
    return int(capacity_bytes * HEADROOM_FRACTION)


def host_available(limit_bytes: int | None = None) -> int:
    """RAM available now (``psutil``), capped at ``limit_bytes`` (``--host-memory``) when given."""
    available = int(psutil.virtual_memory().available)
    return min(available, limit_bytes) if limit_bytes is not None else available


def describe(nbytes: int) -> str:
    """Bytes as GiB for messages."""
    return f"{nbytes / GIB:.2f} GiB"
