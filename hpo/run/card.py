"""The card a run sizes trials for, read once before hpo's own processes touch it.

Another process may hold part of the device (a desktop, another user's job, or the ballast that carves a
24 GB card out of a bigger one: ``hpo.bench.ballast``). ``record_foreign_memory`` reads what other processes
hold on each selected GPU at the start of ``hpo tune`` and records it in the environment (``FOREIGN_ENV``),
which the run's workers inherit: the memory policy and the ledgers then size trials for the configured card
(``--gpu-memory``) or the device, never for more than the others leave (``hpo.device.gpu.usable_card_bytes``).
Workers started by hand (``hpo worker``) inherit nothing and see the whole device unless it is set.
"""

from __future__ import annotations

import os
from collections.abc import Callable, MutableMapping

from hpo.config.study import StudyConfig
from hpo.device.gpu import FOREIGN_ENV, GpuInfo, detect, foreign_bytes, usable_card_bytes
from hpo.units import GIB, parse_memory


def record_foreign_memory(
    cfg: StudyConfig,
    env: MutableMapping[str, str] | None = None,
    *,
    read_gpu: Callable[[int], GpuInfo] = detect,
    read_foreign: Callable[[int], int] = foreign_bytes,
) -> list[str]:
    """Record other processes' memory on each selected GPU in ``env`` (default: this process's); the notes
    to print (one per GPU where others hold memory). Nothing on CPU or a simulated card, or when already set
    (a resumed launcher's workers keep the reading of their start)."""
    env = os.environ if env is None else env
    if env.get(FOREIGN_ENV) or cfg.device == "cpu":
        return []
    indices = list(cfg.gpus) if cfg.gpus else [0]
    infos = [read_gpu(i) for i in indices]
    if not any(info.available for info in infos):
        return []
    foreign = [read_foreign(i) if info.available else 0 for i, info in zip(indices, infos, strict=True)]
    env[FOREIGN_ENV] = ",".join(str(b) for b in foreign)
    configured = parse_memory(cfg.gpu_memory) if cfg.gpu_memory else None
    notes = []
    for index, info, held in zip(indices, infos, foreign, strict=True):
        if held <= 0:
            continue
        card = usable_card_bytes(info.total_bytes, held, configured)
        asked = (
            f" (--gpu-memory {cfg.gpu_memory} is more than that)" if configured and card < configured else ""
        )
        notes.append(
            f"GPU {index}: other processes hold {held / GIB:.1f} of {info.total_bytes / GIB:.1f} GB; "
            f"trials are sized for a {card / GIB:.1f} GB card{asked}"
        )
    return notes


def card_status(cfg: StudyConfig, info: GpuInfo, foreign: int) -> str:
    """The status line's GPU part: what the device holds beyond the others' start-time memory, on the card
    trials are sized for ("GPU 12.3/24.0 GB (others 117.0 GB)"); empty without a GPU."""
    if not info.available:
        return ""
    configured = parse_memory(cfg.gpu_memory) if cfg.gpu_memory else None
    card = usable_card_bytes(info.total_bytes, foreign, configured)
    ours = max(0, info.used_bytes - foreign)
    others = f" (others {foreign / GIB:.1f} GB)" if foreign > 0 else ""
    return f" | GPU {ours / GIB:.1f}/{card / GIB:.1f} GB{others}"
