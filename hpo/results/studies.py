"""`hpo studies`: the studies one storage holds, with trials by outcome, best value and last activity.

The answer to "what is in this folder?" after a week of runs: name, agent, trials (complete, pruned, of them
OOM, failed, running), the best value named by its metric (the front's size for a multi-objective study) and
when a trial last started or ended. A table by default, newest activity first; ``--json`` for scripts.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import optuna
from optuna.trial import TrialState

from hpo.redact import redact
from hpo.results.pareto import front_trials, objective_names
from hpo.results.report_summary import best_trial, first_value
from hpo.results.trials import count_states
from hpo.storage.study import AGENT_ATTR, BASELINE_ATTR, open_existing
from hpo.trial import keys as K

COLUMNS = ("study", "agent", "complete", "pruned", "oom", "fail", "running", "best", "last activity")


def _last_activity(trials: list[optuna.trial.FrozenTrial]) -> datetime | None:
    times = [t for tr in trials for t in (tr.datetime_complete, tr.datetime_start) if t is not None]
    return max(times, default=None)


def _best(study: optuna.Study) -> dict[str, Any]:
    """``{"metric", "value"}`` of a single-objective study (value None before a complete trial), or
    ``{"objectives", "front_size"}`` of a multi-objective one."""
    if len(study.directions) > 1:
        return {"objectives": objective_names(study), "front_size": len(front_trials(study))}
    metric = (study.user_attrs.get(BASELINE_ATTR) or {}).get("metric") or "value"
    best = best_trial(study)
    return {"metric": metric, "value": first_value(best) if best is not None else None}


def study_row(study: optuna.Study) -> dict[str, Any]:
    """One study's line of `hpo studies` (JSON-able, full precision)."""
    trials = study.get_trials(deepcopy=False)
    counts = count_states(study)  # pruned ones by reason, as `hpo trials` and the report count them
    last = _last_activity(trials)
    return {
        "study": study.study_name,
        "agent": study.user_attrs.get(AGENT_ATTR),
        "trials": len(trials),
        "complete": counts["complete"],
        "pruned": sum(n for key, n in counts.items() if key.startswith("pruned_")),
        "pruned_oom": counts[f"pruned_{K.REASON_OOM}"],
        "fail": counts["fail"],
        "running": counts["running"],
        "waiting": sum(t.state == TrialState.WAITING for t in trials),
        "best": _best(study),
        "last_activity": last.isoformat(timespec="seconds") if last is not None else None,
    }


def study_rows(storage_url: str) -> list[dict[str, Any]]:
    """Every study of the storage at ``storage_url`` (which must exist), newest activity first."""
    storage = open_existing(storage_url)
    names = optuna.get_all_study_names(storage=storage)
    rows = [study_row(optuna.load_study(study_name=n, storage=storage)) for n in names]
    return sorted(rows, key=lambda r: (r["last_activity"] or "", r["study"]), reverse=True)


def _best_cell(best: dict[str, Any]) -> str:
    if "front_size" in best:
        return f"front of {best['front_size']} ({', '.join(best['objectives'])})"
    return "-" if best["value"] is None else f"{best['metric']} {best['value']:.4g}"


def render(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned text table."""
    table = [list(COLUMNS)]
    for r in rows:
        last = (r["last_activity"] or "-").replace("T", " ")[:16]
        counts = [str(r[k]) for k in ("complete", "pruned", "pruned_oom", "fail", "running")]
        table.append([r["study"], r["agent"] or "-", *counts, _best_cell(r["best"]), last])
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    right = {2, 3, 4, 5, 6}  # the counts
    lines = [
        "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in table
    ]
    return "\n".join(line.rstrip() for line in lines)


def show_studies(storage_url: str, as_json: bool) -> str:
    """`hpo studies`: the table (or JSON list) of the studies in the storage."""
    rows = study_rows(storage_url)
    if as_json:
        return json.dumps(rows, indent=2)
    if not rows:
        return f"no studies in {redact(storage_url)} yet (`hpo tune --study NAME` creates one)"
    return render(rows)
