"""The GPU study's outputs: per-trial CSVs (one per schedule) and the one-line JSON of its totals."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial

from hpo.bench import study_rows as R
from hpo.trial import keys as K

NOT_MEASURED = (
    "simulated card (no CUDA): nothing was measured; trial times are CPU times of tiny models, OOMs are "
    "injected or simulated, and a simulated card cannot make a neighbour run out of memory"
)


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(R.COLUMNS))
        writer.writeheader()
        writer.writerows(rows)


def _trial(trials: Sequence[FrozenTrial], number: int | None) -> FrozenTrial | None:
    return next((t for t in trials if t.number == number), None)


def forced_oom(result: dict[str, Any], rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """How the forced-OOM trial ended and how many other trials completed while it ran."""
    t = _trial(result["trials"], result["forced"])
    if t is None:
        return None
    rec = t.user_attrs.get(K.OOM_CONFIG) or {}
    me = R.interval(t)
    beside = [
        r
        for r in rows
        if r["number"] != t.number
        and r["state"] == "COMPLETE"
        and None not in (me[0], me[1], r["started"], r["ended"])
        and r["started"] < me[1]  # type: ignore[operator]
        and r["ended"] > me[0]  # type: ignore[operator]
    ]
    state, reason = t.state.name, t.user_attrs.get(K.PRUNED_REASON)
    keys = (
        "model",
        "batch_size",
        "max_length",
        "precision",
        "grad_checkpointing",
        "origin",
        "after_reserved_gb",
    )
    return {
        "trial": t.number,
        "state": state,
        "pruned_reason": reason,
        "oom_config": {k: rec.get(k) for k in keys},
        "injected": rec.get("origin") == "injected",
        "others_completed_meanwhile": len(beside),
        "ok": state == "PRUNED" and reason == K.REASON_OOM,
    }


def cpu_fallback(result: dict[str, Any]) -> dict[str, Any] | None:
    """How the ``--on-oom cpu`` trial ended: it must complete on the CPU."""
    t = _trial(result["trials"], result["forced"])
    if t is None:
        return None
    attempts = t.user_attrs.get(K.OOM_ATTEMPTS) or []  # a completed trial keeps its OOMs here
    rec = t.user_attrs.get(K.OOM_CONFIG) or (attempts[-1] if attempts else {})
    device = str(t.user_attrs.get(K.FINAL_DEVICE, ""))
    return {
        "trial": t.number,
        "state": t.state.name,
        "final_device": device,
        "origin": rec.get("origin"),
        "injected": rec.get("origin") == "injected",
        "after_reserved_gb": rec.get("after_reserved_gb"),
        "ok": t.state.name == "COMPLETE" and device.startswith("cpu") and bool(rec),
    }


def summarize(
    results: dict[str, dict[str, Any]], out: Path, simulated: bool, ballast: dict[str, Any] | None
) -> dict[str, Any]:
    """Write ``out/<schedule>.csv`` (and ``out/trials.csv``, all of them) and return the JSON totals."""
    all_rows: list[dict[str, Any]] = []
    totals: dict[str, Any] = {}
    by_name: dict[str, list[dict[str, Any]]] = {}
    for name, res in results.items():
        forced = [res["forced"]] if res["forced"] is not None else []
        rs = R.rows(res["trials"], name, forced)
        by_name[name] = rs
        write_csv(out / f"{name}.csv", rs)
        all_rows += rs
        totals[name] = R.schedule_totals(rs, res["wall_s"]) | {"rc": res["rc"]}
    write_csv(out / "trials.csv", all_rows)
    hpo_rate = totals.get("hpo", {}).get("completed_per_hour")
    ratios = {
        f"hpo_vs_{name}": round(hpo_rate / t["completed_per_hour"], 3)
        for name, t in totals.items()
        if name.startswith("fixed-par-") and hpo_rate and t["completed_per_hour"]
    }
    hpo_rows = by_name.get("hpo", []) + by_name.get("hpo-shrink", [])
    mix_rows = [r for name, rs in by_name.items() if name != "cpu-fallback" for r in rs]
    return {
        "measured": not simulated,
        "note": NOT_MEASURED if simulated else "real CUDA card, emulated as the study's --gpu-memory",
        "ballast": ballast,
        "schedules": totals,
        "ratio": ratios,
        "ooms_caught": sum(r["oom"] for r in hpo_rows),
        "neighbour_deaths": {name: t["neighbour_deaths"] for name, t in totals.items()},
        "estimate_error_by_family": R.error_by_family(mix_rows),
        "worst_under_prediction": R.worst_under(mix_rows),
        "forced_oom": forced_oom(results["hpo"], by_name["hpo"]) if "hpo" in results else None,
        "cpu_fallback": cpu_fallback(results["cpu-fallback"]) if "cpu-fallback" in results else None,
        "csv": sorted(str(p) for p in out.glob("*.csv")),
    }
