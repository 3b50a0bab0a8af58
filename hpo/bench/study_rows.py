"""The GPU study's per-trial rows and totals (``scripts/gpu_study.py``), read from finished Optuna trials.

A row is one trial: its config, estimate and measured peaks, state, OOM and the memory left on the card after
the OOM's cleanup. ``neighbour_death`` marks a trial that ran out of memory (or whose worker died) because of
the trials beside it, by this rule:

- an OOM whose origin is ``neighbour`` (a capped hpo worker that ran out without reaching its own cap), or
- an OOM on the real card that did not hit the trial's own cap (no ``allowed;`` in torch's message), whose
  estimate fits the card alone (``estimated_peak_gb <= gpu_gb - headroom_gb``) and that overlapped another
  trial in time (it ran out because of others: the fixed-PAR baseline has no caps), or
- a worker death (``worker_death`` attr) that overlapped another trial in time.

Trials forced to run out of memory on purpose (the study's test hook) and injected or simulated OOMs are
never neighbour deaths.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from hpo.trial import keys as K

COLUMNS = (
    "schedule",
    "number",
    "state",
    "model",
    "family",
    "batch_size",
    "grad_accum",
    "max_length",
    "precision",
    "grad_checkpointing",
    "estimated_peak_gb",
    "measured_peak_gb",
    "measured_reserved_gb",
    "measured_device_gb",
    "nvml_process_gb",
    "estimate_error",
    "pruned_reason",
    "oom",
    "oom_origin",
    "forced",
    "neighbour_death",
    "worker",
    "started",
    "ended",
    "after_allocated_gb",
    "after_reserved_gb",
    "after_process_gb",
)
REAL_OOM_ORIGINS = ("cuda", "neighbour")


def family(model: str) -> str:
    """A model's family name: the catalog name, or a materialized model directory's name."""
    return Path(model).name if "/" in model else model


def _ts(value: datetime | float | None) -> float | None:
    if value is None:
        return None
    return value.timestamp() if isinstance(value, datetime) else float(value)


def interval(t: FrozenTrial) -> tuple[float | None, float | None]:
    """When the trial held the card: admitted..released (ledger), else started..completed."""
    a = t.user_attrs
    start = _ts(a.get(K.ADMITTED_AT)) or _ts(t.datetime_start)
    end = _ts(a.get(K.RELEASED_AT)) or _ts(t.datetime_complete)
    return start, end


def _overlaps(a: tuple[float | None, float | None], b: tuple[float | None, float | None]) -> bool:
    if None in a or None in b:
        return False
    return a[0] < b[1] and b[0] < a[1]  # type: ignore[operator]


def _fits_alone(a: dict[str, Any]) -> bool:
    est, card = a.get(K.ESTIMATED_PEAK_GB), a.get(K.GPU_GB)
    return est is not None and card is not None and est <= card - (a.get(K.HEADROOM_GB) or 0.0)


def is_neighbour_death(t: FrozenTrial, others: Iterable[FrozenTrial], forced: bool = False) -> bool:
    """The rule of the module docstring."""
    a = t.user_attrs
    if forced:
        return False
    overlapped = any(_overlaps(interval(t), interval(o)) for o in others if o.number != t.number)
    if a.get(K.WORKER_DEATH):
        return overlapped
    if not a.get(K.OOM):
        return False
    rec = a.get(K.OOM_CONFIG) or {}
    origin = rec.get("origin", "")
    if origin == "neighbour":
        return True
    own_cap = "allowed;" in str(rec.get("error_head", ""))
    return origin == "cuda" and not own_cap and _fits_alone(a) and overlapped


def row(t: FrozenTrial, schedule: str, others: Sequence[FrozenTrial], forced: bool = False) -> dict[str, Any]:
    """One CSV row (``COLUMNS``) of trial ``t``; ``others``: the trials of the same run."""
    a = t.user_attrs
    cfg = a.get(K.TRIAL_CONFIG) or {}
    rec = a.get(K.OOM_CONFIG) or {}
    est, device = a.get(K.ESTIMATED_PEAK_GB), a.get(K.MEASURED_DEVICE_GB)
    start, end = interval(t)
    return {
        "schedule": schedule,
        "number": t.number,
        "state": t.state.name,
        "model": cfg.get("model", ""),
        "family": family(str(cfg.get("model", ""))),
        "batch_size": cfg.get("batch_size"),
        "grad_accum": cfg.get("grad_accum"),
        "max_length": cfg.get("max_length"),
        "precision": cfg.get("precision"),
        "grad_checkpointing": cfg.get("grad_checkpointing"),
        "estimated_peak_gb": est,
        "measured_peak_gb": a.get(K.MEASURED_PEAK_GB),
        "measured_reserved_gb": a.get(K.MEASURED_RESERVED_GB),
        "measured_device_gb": device,
        "nvml_process_gb": a.get(K.NVML_PROCESS_GB),
        "estimate_error": round(device / est - 1, 4) if device and est else None,
        "pruned_reason": a.get(K.PRUNED_REASON),
        "oom": bool(a.get(K.OOM)),
        "oom_origin": rec.get("origin"),
        "forced": forced,
        "neighbour_death": is_neighbour_death(t, others, forced),
        "worker": a.get(K.WORKER),
        "started": start,
        "ended": end,
        "after_allocated_gb": rec.get("after_allocated_gb"),
        "after_reserved_gb": rec.get("after_reserved_gb"),
        "after_process_gb": rec.get("after_process_gb"),
    }


def rows(trials: Sequence[FrozenTrial], schedule: str, forced: Iterable[int] = ()) -> list[dict[str, Any]]:
    """Rows of every finished or running trial of one run (waiting ones never ran)."""
    ran = [t for t in trials if t.state != TrialState.WAITING]
    marked = set(forced)
    return [row(t, schedule, ran, t.number in marked) for t in ran]


def schedule_totals(rs: Sequence[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    """Counts of one schedule's run and its completed trials per hour over ``wall_s``."""
    completed = sum(r["state"] == "COMPLETE" for r in rs)
    reasons: dict[str, int] = {}
    for r in rs:
        if r["state"] == "PRUNED":
            reasons[str(r["pruned_reason"])] = reasons.get(str(r["pruned_reason"]), 0) + 1
    return {
        "trials": len(rs),
        "completed": completed,
        "pruned": reasons,
        "failed": sum(r["state"] == "FAIL" for r in rs),
        "ooms": sum(r["oom"] for r in rs),
        "neighbour_deaths": sum(r["neighbour_death"] for r in rs),
        "wall_s": round(wall_s, 1),
        "completed_per_hour": round(completed * 3600 / wall_s, 1) if wall_s > 0 else None,
    }


def error_by_family(rs: Iterable[dict[str, Any]]) -> dict[str, dict[str, float | int]]:
    """measured device / estimate - 1 per model family: n, min, median, max (measured trials only)."""
    by: dict[str, list[float]] = {}
    for r in rs:
        if r["estimate_error"] is not None:
            by.setdefault(r["family"], []).append(float(r["estimate_error"]))
    return {
        f: {"n": len(v), "min": min(v), "median": round(statistics.median(v), 4), "max": max(v)}
        for f, v in sorted(by.items())
    }


def worst_under(rs: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The trial whose measured device peak exceeded its estimate the most (None when none did)."""
    under = [r for r in rs if r["estimate_error"] is not None and r["estimate_error"] > 0]
    if not under:
        return None
    w = max(under, key=lambda r: r["estimate_error"])
    keys = ("schedule", "number", "model", "batch_size", "max_length", "precision", "grad_checkpointing")
    return {k: w[k] for k in keys} | {
        "estimated_peak_gb": w["estimated_peak_gb"],
        "measured_device_gb": w["measured_device_gb"],
        "error": w["estimate_error"],
    }
