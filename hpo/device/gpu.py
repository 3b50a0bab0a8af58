"""GPU readings (NVML via nvidia-ml-py, else torch.cuda; "no GPU" on CPU) and GPU profiles.

Memory sizes: "GB" means GiB (hpo.units). Profiles (configs/gpus/*.yaml) bound the search space by model
size (parameter count from the catalog); a card between two profiles uses the one whose memory is nearest
below, with batch bounds scaled up by the memory ratio; a card smaller than every profile uses the smallest
unchanged (the estimator still prunes what does not fit).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hpo.device.allocator import CUDA_CONTEXT, DEFAULT_ALLOCATOR, Allocator
from hpo.errors import ConfigError
from hpo.paths import CONFIG_DIR
from hpo.units import GIB, MIB, parse_memory

if TYPE_CHECKING:
    import torch


@dataclass
class GpuInfo:
    """One GPU as NVML (or torch.cuda) sees it; ``available`` is False on a machine without one."""

    available: bool
    index: int
    name: str
    uuid: str
    total_bytes: int
    used_bytes: int


def _nvml() -> Any | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # no driver, no library, no GPU: NVML is optional
        return None


def nvml_index(nvml: Any, index: int, env: Mapping[str, str] | None = None) -> int:
    """The NVML index of torch device ``index``: CUDA_VISIBLE_DEVICES renumbers the cards a process sees
    (integers, or UUIDs / their prefixes), NVML always sees all of them. Unset: the same number (torch then
    numbers cards as NVML does only with CUDA_DEVICE_ORDER=PCI_BUS_ID; the launcher's workers inherit it)."""
    visible = (os.environ if env is None else env).get("CUDA_VISIBLE_DEVICES")
    if visible is None or not visible.strip():
        return index
    entries = [e.strip() for e in visible.split(",") if e.strip()]
    if index >= len(entries):
        raise IndexError(f"torch device {index} is not among CUDA_VISIBLE_DEVICES={visible}")
    entry = entries[index]
    if entry.isdigit():
        return int(entry)
    for i in range(nvml.nvmlDeviceGetCount()):
        if _text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i))).startswith(entry):
            return i
    raise IndexError(f"no GPU with UUID {entry} (CUDA_VISIBLE_DEVICES={visible})")


def detect(index: int = 0) -> GpuInfo:
    """Read torch device ``index`` through NVML (honouring CUDA_VISIBLE_DEVICES), else torch.cuda; never
    raises (``available=False`` on CPU). ``uuid`` identifies the card across processes and renumberings."""
    nvml = _nvml()
    if nvml is not None:
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(nvml_index(nvml, index))
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            name, uuid = nvml.nvmlDeviceGetName(handle), nvml.nvmlDeviceGetUUID(handle)
            return GpuInfo(True, index, _text(name), _text(uuid), int(mem.total), int(mem.used))
        except Exception:
            pass
    try:
        import torch

        if torch.cuda.is_available() and index < torch.cuda.device_count():
            props = torch.cuda.get_device_properties(index)
            free, total = torch.cuda.mem_get_info(index)
            uuid = str(getattr(props, "uuid", ""))
            uuid = uuid if not uuid or uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"  # NVML's form
            return GpuInfo(True, index, props.name, uuid, int(total), int(total - free))
    except Exception:
        pass
    return GpuInfo(False, index, "no GPU", "", 0, 0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def process_memory_bytes(pid: int | None = None) -> int | None:
    """GPU memory NVML attributes to process ``pid`` (default: this one) on all GPUs; None without NVML or
    when the process holds none. The one NVML per-process reader in hpo."""
    nvml = _nvml()
    if nvml is None:
        return None
    pid = os.getpid() if pid is None else pid
    try:
        used, found = 0, False
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.pid == pid and proc.usedGpuMemory is not None:
                    used, found = used + int(proc.usedGpuMemory), True
        return used if found else None
    except Exception:
        return None


FOREIGN_ENV = "HPO_FOREIGN_GPU_BYTES"  # per selected GPU, comma-separated: memory others held at the start
DRIVER_BASELINE = 512 * MIB  # NVML "used" on an idle card (driver); the fallback below does not count it


def foreign_bytes(index: int = 0, nvml: Any | None = None) -> int:
    """Device memory other processes hold on torch device ``index`` now (0 without NVML).

    Call it before hpo's own processes touch the card (``hpo.run.card``): then every process NVML lists is
    foreign (a ballast, a desktop, another user's job). When NVML lists none (a container hides them) but
    reports memory in use, what is used beyond an idle card's ``DRIVER_BASELINE`` counts as foreign.
    """
    nvml = nvml if nvml is not None else _nvml()
    if nvml is None:
        return 0
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(nvml_index(nvml, index))
        listed = 0
        for reader in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            for proc in getattr(nvml, reader, lambda _h: [])(handle):
                listed += int(proc.usedGpuMemory or 0)
        if listed:
            return listed
        return max(0, int(nvml.nvmlDeviceGetMemoryInfo(handle).used) - DRIVER_BASELINE)
    except Exception:
        return 0


def foreign_from_env(position: int, env: Mapping[str, str] | None = None) -> int:
    """The foreign memory recorded at the start of the run for selected GPU ``position`` (0 when unset)."""
    raw = (os.environ if env is None else env).get(FOREIGN_ENV, "")
    values = [v.strip() for v in raw.split(",") if v.strip()]
    try:
        return max(0, int(values[position])) if position < len(values) else 0
    except ValueError:
        return 0


def usable_card_bytes(total_bytes: int, foreign: int, configured: int | None = None) -> int:
    """The card hpo sizes trials for: the configured size (``--gpu-memory``) or the device's total, but never
    more than other processes leave of the device."""
    card = configured if configured is not None else total_bytes
    return max(0, min(card, total_bytes - foreign))


def resolve_device(choice: str) -> torch.device:
    """auto -> cuda when available, else cpu; asking for cuda without one is a ConfigError."""
    import torch

    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda but no CUDA device is available", "use --device auto or cpu")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


@dataclass
class SizeBounds:
    """Upper bounds the search space uses for one model on one GPU."""

    max_batch_size: int
    max_grad_accum: int
    max_length: int
    quant: tuple[str, ...] = ("none",)  # base-weight quantisations the tier allows (LoRA decoders)


@dataclass
class GpuProfile:
    """Bounds by model size for one GPU memory size (configs/gpus/*.yaml)."""

    name: str
    memory_bytes: int
    headroom_gb: float = 1.5
    tiers: list[tuple[int | None, SizeBounds]] = field(default_factory=list)  # (max params or None, bounds)
    scale: float = 1.0  # memory of this card / memory of the profile file
    allocator: Allocator = (
        DEFAULT_ALLOCATOR  # CUDA context + caching-allocator overhead (sourced in the YAML)
    )

    def bounds(self, n_params: int) -> SizeBounds:
        """Bounds of the first tier whose parameter limit covers ``n_params``; batch scaled to this card."""
        for limit, b in self.tiers:
            if limit is None or n_params <= limit:
                batch = max(1, int(b.max_batch_size * self.scale))
                return SizeBounds(batch, b.max_grad_accum, b.max_length, b.quant)
        raise ConfigError(
            f"GPU profile {self.name} has no tier for {n_params:,} parameters",
            "end its tiers with one whose max_params is null",
        )


def read_profile(path: Path) -> GpuProfile:
    """Load and validate one profile YAML (ConfigError on any problem)."""
    try:
        data = yaml.safe_load(path.read_text())
        tiers = [
            (
                None if t["max_params"] is None else int(t["max_params"]),
                SizeBounds(
                    int(t["max_batch_size"]),
                    int(t["max_grad_accum"]),
                    int(t["max_length"]),
                    tuple(str(q) for q in t.get("quant", ["none"])),
                ),
            )
            for t in data["tiers"]
        ]
        alloc = data.get("allocator") or {}
        allocator = Allocator(
            context_bytes=int(float(data.get("cuda_context_mb", CUDA_CONTEXT / MIB)) * MIB),
            transient=float(alloc.get("transient", DEFAULT_ALLOCATOR.transient)),
            persistent=float(alloc.get("persistent", DEFAULT_ALLOCATOR.persistent)),
            floor_bytes=int(float(alloc.get("floor_mb", DEFAULT_ALLOCATOR.floor_bytes / MIB)) * MIB),
            eval_transient=float(alloc.get("eval_transient", DEFAULT_ALLOCATOR.eval_transient)),
        )
        profile = GpuProfile(
            str(data["name"]),
            parse_memory(str(data["memory_gb"])),
            float(data["headroom_gb"]),
            tiers,
            allocator=allocator,
        )
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"invalid GPU profile {path}: {exc}".splitlines()[0], "see configs/gpus/24gb.yaml for the format"
        ) from exc
    limits = [lim for lim, _ in tiers]
    if not tiers or limits[-1] is not None or None in limits[:-1]:
        raise ConfigError(
            f"GPU profile {path}: tiers must end with exactly one max_params: null",
            "see configs/gpus/24gb.yaml",
        )
    finite = [lim for lim in limits if lim is not None]
    if finite != sorted(finite) or any(
        min(b.max_batch_size, b.max_grad_accum, b.max_length) < 1 for _, b in tiers
    ):
        raise ConfigError(
            f"GPU profile {path}: tiers must grow in max_params and have positive bounds",
            "see configs/gpus/24gb.yaml",
        )
    if any(not b.quant or set(b.quant) - {"none", "4bit", "8bit"} for _, b in tiers):
        raise ConfigError(f"GPU profile {path}: a tier's quant lists none, 4bit or 8bit", "fix its quant")
    if not 0 <= profile.headroom_gb < profile.memory_bytes / GIB:
        raise ConfigError(f"GPU profile {path}: headroom_gb must be within the memory", "fix headroom_gb")
    return profile


def profiles(directory: Path | None = None) -> list[GpuProfile]:
    """Every shipped profile, smallest memory first."""
    found = [read_profile(p) for p in sorted((directory or CONFIG_DIR / "gpus").glob("*.yaml"))]
    if not found:
        raise ConfigError("no GPU profiles found", "restore configs/gpus/*.yaml")
    return sorted(found, key=lambda p: p.memory_bytes)


def load_profile(gpu_memory: str | None, directory: Path | None = None) -> GpuProfile:
    """The profile for a card of ``gpu_memory`` (None: the detected GPU, else the 24 GB profile)."""
    shipped = profiles(directory)
    if gpu_memory is None:
        gpu = detect()
        if not gpu.available:
            return next((p for p in shipped if p.name == "24gb"), shipped[0])
        memory = gpu.total_bytes
    else:
        memory = parse_memory(gpu_memory)
    below = [p for p in shipped if p.memory_bytes <= memory]
    base = below[-1] if below else shipped[0]  # smaller than every profile: the smallest, not scaled down
    if base.memory_bytes == memory:
        return base
    scale = max(1.0, memory / base.memory_bytes)
    return GpuProfile(
        f"{base.name} for a {memory / GIB:g}GB card",
        memory,
        base.headroom_gb,
        base.tiers,
        scale,
        base.allocator,
    )


def headroom_bytes(profile: GpuProfile, headroom_gb: float | None = None) -> int:
    """Memory kept free on the card: ``headroom_gb`` when given, else the GPU profile's (the one rule that
    ``hpo tune`` and ``hpo estimate`` share)."""
    return int((profile.headroom_gb if headroom_gb is None else headroom_gb) * GIB)
