"""Per-model correction of the estimate, learned from measured peaks and OOMs of finished trials.

A JSON file (path chosen by the caller, e.g. beside the Optuna storage) holds, per model, the measured peaks
(device level: ``torch.cuda.max_memory_reserved`` plus the CUDA context read from NVML) with the estimate
they were compared to, and the configurations that ran out of memory. Writers take a file lock and replace
the file atomically, so parallel trial processes can share it. ``path=None`` keeps everything in memory.

The correction factor of a model is the largest ratio seen (never below 1): measured / estimated for peaks,
and (GPU memory / estimated) * 1.02 for OOMs whose GPU size is known, since an OOM proves the true peak
was above the card. A config that OOMed blocks every near-identical config that is at least as large.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from filelock import FileLock

from hpo.memory.budget import Budget, MemoryRequest

MAX_FACTOR = 4.0
OOM_MARGIN = 1.02
_SAME = ("precision", "grad_checkpointing", "optimizer", "mode", "quant", "attn_impl")


class Calibration:
    """Measured peaks and OOMs per model, and the correction they imply."""

    def __init__(self, path: Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._memory: dict[str, Any] = {"version": 1, "models": {}}
        self._cache: tuple[float, dict[str, Any]] | None = None

    def _read(self) -> dict[str, Any]:
        if self.path is None:
            return self._memory
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return {"version": 1, "models": {}}
        if self._cache is None or self._cache[0] != mtime:
            try:
                data = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError):
                data = {"version": 1, "models": {}}  # a damaged file is ignored, then rewritten
            self._cache = (
                mtime,
                data if isinstance(data.get("models"), dict) else {"version": 1, "models": {}},
            )
        return self._cache[1]

    def _update(self, model: str, kind: str, entry: dict[str, Any]) -> None:
        if self.path is None:
            self._memory["models"].setdefault(model, {"peaks": [], "ooms": []})[kind].append(entry)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock"):
            self._cache = None
            data = self._read()
            data["models"].setdefault(model, {"peaks": [], "ooms": []})[kind].append(entry)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle, indent=1)
            os.replace(tmp, self.path)
            self._cache = None

    def record_peak(self, model: str, req: MemoryRequest, estimated_bytes: int, measured_bytes: int) -> None:
        """Record a finished trial's measured device peak next to the estimate it had."""
        self._update(
            model,
            "peaks",
            {
                "req": asdict(req),
                "estimated": int(estimated_bytes),
                "measured": int(measured_bytes),
                "time": time.time(),
            },
        )

    def record_oom(
        self, model: str, req: MemoryRequest, estimated_bytes: int, gpu_bytes: int | None = None
    ) -> None:
        """Record a configuration that ran out of memory (``gpu_bytes``: the card, if known)."""
        self._update(
            model,
            "ooms",
            {
                "req": asdict(req),
                "estimated": int(estimated_bytes),
                "gpu_bytes": None if gpu_bytes is None else int(gpu_bytes),
                "time": time.time(),
            },
        )

    def factor(self, model: str) -> float:
        """The correction factor for ``model`` (1.0 without observations)."""
        entry = self._read()["models"].get(model, {})
        ratios = [p["measured"] / p["estimated"] for p in entry.get("peaks", []) if p.get("estimated")]
        ratios += [
            OOM_MARGIN * o["gpu_bytes"] / o["estimated"]
            for o in entry.get("ooms", [])
            if o.get("gpu_bytes") and o.get("estimated")
        ]
        return min(MAX_FACTOR, max([1.0, *ratios]))

    def correct(self, model: str, req: MemoryRequest, budget: Budget) -> Budget:
        """``budget`` scaled by the model's factor; ``method`` gets "+calibrated" when a factor applies."""
        f = self.factor(model)
        if f == 1.0:
            return budget
        comp = {k: int(v * f) for k, v in budget.components.items()}
        return replace(
            budget,
            components=comp,
            total_bytes=int(budget.total_bytes * f),
            device_total_bytes=int(budget.device_total_bytes * f),
            method=budget.method + "+calibrated",
        )

    def known_oom(self, model: str, req: MemoryRequest) -> bool:
        """True if a near-identical config (same model, precision, checkpointing, optimizer, mode, quant,
        attention, LoRA or not; no more frozen layers; batch * length at least as large) OOMed before."""
        for oom in self._read()["models"].get(model, {}).get("ooms", []):
            old = oom["req"]
            if any(old.get(k) != getattr(req, k) for k in _SAME):
                continue
            if bool(old.get("lora_r")) != bool(req.lora_r) or req.frozen_layers > old.get("frozen_layers", 0):
                continue
            if req.batch_size * req.max_length >= old["batch_size"] * old["max_length"]:
                return True
        return False
