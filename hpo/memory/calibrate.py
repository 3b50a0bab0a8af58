"""Correction of the estimate from real evidence only: measured peaks and CUDA OOMs on real cards.

Evidence is keyed by (model, card name, card memory, precision, attention implementation): an OOM on a 24 GB
card says nothing about an 80 GB one, nor fp32 about bf16. What calibrates: a finished trial's measured
device peak (``torch.cuda.max_memory_reserved`` + the CUDA context, or NVML when larger) next to its estimate,
and a real CUDA OOM of the trial's own memory on a real card (it proves the true peak was above its limit).
What never calibrates (callers record it on the trial instead): injected OOMs (``HPO_INJECT_OOM``), simulated
cards, host-RAM OOMs and OOMs caused by a neighbour process (see ``oom_origin``).

The factor is robust and bounded: the 90th percentile of the last ``WINDOW`` ratios (measured / estimated;
for OOMs limit / estimated x 1.02), at least 1 and at most ``MAX_FACTOR``. One outlier among many
measurements moves it little, and old evidence ages out. A JSON file (file lock, atomic replace) shares it
between processes; ``path=None`` keeps everything in memory.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from filelock import FileLock

from hpo.errors import ConfigError
from hpo.memory.budget import Budget, MemoryRequest
from hpo.units import GIB

MAX_FACTOR = 1.5
WINDOW = 20
QUANTILE = 0.9
OOM_MARGIN = 1.02
VERSION = 2
REAL_ORIGIN = "cuda"  # the one OOM origin that is evidence about the estimate
_SAME = ("grad_checkpointing", "optimizer", "mode", "quant")


def calibration_key(model: str, card: str, card_bytes: int, req: MemoryRequest) -> str:
    """The evidence key: model, card name and memory (GiB), precision, attention implementation (and the
    4/8-bit base weights, which keys made before them lack)."""
    key = f"{model}|{card or 'unknown card'}|{round(card_bytes / GIB)}GiB|{req.precision}|{req.attn_impl}"
    return key + (f"|{req.quant}" if req.quant else "")


def oom_origin(message: str, *, on_cuda: bool, simulated: bool, neighbours: bool) -> str:
    """Where an OOM came from: injected, simulated, host_ram, neighbour or cuda (the trial's own, real).

    On a real card shared with other workers (``neighbours``), an OOM that does not name this process's
    own cap ("... allowed;" in torch's message) is counted as caused by a neighbour.
    """
    if "(injected" in message:
        return "injected"
    if simulated or "Simulated GPU" in message:
        return "simulated"
    if not on_cuda or "CUDA out of memory" not in message:
        return "host_ram"
    if neighbours and "allowed;" not in message:
        return "neighbour"
    return REAL_ORIGIN


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _is_calibration(data: object) -> bool:
    return isinstance(data, dict) and data.get("version") == VERSION and isinstance(data.get("keys"), dict)


def read_calibration(path: Path) -> Calibration:
    """The calibration file a user named (`hpo estimate --calibration`): it must exist and be hpo's (a study
    ignores and rewrites a damaged one of its own; a named file that is not there is a mistake)."""
    fix = "pass the calibration.json a study wrote in its --output-dir (e.g. runs/calibration.json)"
    if not path.is_file():
        raise ConfigError(f"--calibration {path}: no such file", fix)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--calibration {path} is not JSON: {str(exc).splitlines()[0][:120]}", fix) from exc
    if not _is_calibration(data):
        raise ConfigError(f"--calibration {path} is not an hpo calibration file (version {VERSION})", fix)
    return Calibration(path)


class Calibration:
    """Measured peaks and real OOMs per evidence key, and the correction they imply."""

    def __init__(self, path: Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._memory: dict[str, Any] = {"version": VERSION, "keys": {}}
        self._cache: tuple[float, dict[str, Any]] | None = None

    def _read(self) -> dict[str, Any]:
        if self.path is None:
            return self._memory
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return {"version": VERSION, "keys": {}}
        if self._cache is None or self._cache[0] != mtime:
            try:
                data = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError):
                data = {}  # a damaged file (or one of the model-keyed version 1) is ignored, then rewritten
            self._cache = (mtime, data if _is_calibration(data) else {"version": VERSION, "keys": {}})
        return self._cache[1]

    def _update(self, key: str, kind: str, entry: dict[str, Any]) -> None:
        if self.path is None:
            self._memory["keys"].setdefault(key, {"peaks": [], "ooms": []})[kind].append(entry)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock"):
            self._cache = None
            data = self._read()
            data["keys"].setdefault(key, {"peaks": [], "ooms": []})[kind].append(entry)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle, indent=1)
            os.replace(tmp, self.path)
            self._cache = None

    def record_peak(self, key: str, req: MemoryRequest, estimated_bytes: int, measured_bytes: int) -> None:
        """Record a finished trial's measured device peak on a real card next to its estimate."""
        entry = {"req": asdict(req), "estimated": int(estimated_bytes), "measured": int(measured_bytes)}
        self._update(key, "peaks", {**entry, "time": time.time()})

    def record_oom(
        self, key: str, req: MemoryRequest, estimated_bytes: int, limit_bytes: int | None, origin: str
    ) -> bool:
        """Record a real CUDA OOM (``limit_bytes``: what the trial could use). Other origins are not
        evidence about the estimate: nothing is recorded and False is returned."""
        if origin != REAL_ORIGIN:
            return False
        entry = {"req": asdict(req), "estimated": int(estimated_bytes), "limit": limit_bytes}
        self._update(key, "ooms", {**entry, "time": time.time()})
        return True

    def factor(self, key: str) -> float:
        """The correction for ``key`` (1.0 without evidence): a bounded high quantile of recent ratios."""
        entry = self._read()["keys"].get(key, {})
        ratios = [
            (p["time"], p["measured"] / p["estimated"]) for p in entry.get("peaks", []) if p["estimated"]
        ]
        ratios += [
            (o["time"], OOM_MARGIN * o["limit"] / o["estimated"])
            for o in entry.get("ooms", [])
            if o.get("limit") and o.get("estimated")
        ]
        recent = [r for _, r in sorted(ratios)[-WINDOW:]]
        return min(MAX_FACTOR, max(1.0, _quantile(recent, QUANTILE))) if recent else 1.0

    def correct(self, key: str, budget: Budget) -> Budget:
        """``budget`` scaled by the key's factor; ``method`` gets "+calibrated" and ``factor`` is set."""
        f = self.factor(key)
        if f == 1.0:
            return budget
        return replace(
            budget,
            components={k: int(v * f) for k, v in budget.components.items()},
            total_bytes=int(budget.total_bytes * f),
            device_total_bytes=int(budget.device_total_bytes * f),
            method=budget.method + "+calibrated",
            phases={k: int(v * f) for k, v in budget.phases.items()},
            factor=f,
        )

    def known_oom(self, key: str, req: MemoryRequest) -> bool:
        """True if a near-identical config (same key, checkpointing, optimizer, mode, quant, LoRA or not; no
        more frozen layers; batch x length at least as large) ran out of memory for real before."""
        for oom in self._read()["keys"].get(key, {}).get("ooms", []):
            old = oom["req"]
            if any(old.get(k) != getattr(req, k) for k in _SAME):
                continue
            if bool(old.get("lora_r")) != bool(req.lora_r) or req.frozen_layers > old.get("frozen_layers", 0):
                continue
            if req.batch_size * req.max_length >= old["batch_size"] * old["max_length"]:
                return True
        return False
