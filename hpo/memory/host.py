"""Host-RAM estimate of one trial and the host's room: what keeps PAR workers clear of the OOM killer.

- CPU training holds on the host what a GPU run holds on the card (weights, gradients, optimizer state,
  activations, temporaries), estimated with eager attention (CPU attention keeps the full attention
  matrices for the backward pass), times :data:`CPU_MALLOC_FACTOR` for malloc arenas, fragmentation and the
  encoded-data cache. Measured (issue 15's command, `--par 2`, torch 2.13 CPU): peak worker RSS less the
  idle worker's 0.43 GiB was 1.39x and 1.53x the tensor estimate (the second in a worker that had run a
  trial before); all-MiniLM-L6-v2 at batch 32, length 512 comes to 11.6 GiB here against the ~10 GB RSS
  per worker the issue reports.
- GPU training holds the model while it loads (the state dict and the module, fp32) and the tokenized data.
- Each worker process itself (Python, torch, transformers, the encoded data) is :data:`PROCESS_BASELINE`:
  measured 0.28 GiB RSS after setup (torch 2.13 CPU build, transformers 5), rounded up for MLflow and data.
"""

from __future__ import annotations

from dataclasses import replace

import psutil

from hpo.config.catalog import ModelSpec
from hpo.memory.budget import MemoryRequest
from hpo.memory.estimate import estimate
from hpo.units import GIB, MIB

PROCESS_BASELINE = 512 * MIB
CPU_MALLOC_FACTOR = 1.4  # RSS / live tensors of a CPU trial (measured 1.39 and 1.53, see above)
HEADROOM_FRACTION = 0.10  # of the host's RAM kept free for the OS, the launcher and page cache
FP32 = 4


def host_peak_bytes(spec: ModelSpec, req: MemoryRequest, on_gpu: bool) -> int:
    """A trial's host-RAM peak beyond its worker's :data:`PROCESS_BASELINE`."""
    if on_gpu:
        return 2 * spec.params * FP32  # state dict + module while the weights load, before .to(cuda)
    cpu = estimate(spec, replace(req, attn_impl="eager", precision="fp32"))
    # the estimate's cuBLAS workspaces (64 MiB) have no CPU counterpart; kept, they stand in for the malloc
    # arenas of the smallest trials, which the factor (measured on MiniLM) does not cover
    return int(cpu.total_bytes * CPU_MALLOC_FACTOR)


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
