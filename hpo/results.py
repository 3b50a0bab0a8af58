"""Reading a study back: trial rows for `hpo trials`, the best trial for `hpo best`."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.errors import StorageError

KEY_PARAMS = ("model", "learning_rate", "batch_size", "grad_accum", "max_length", "precision", "loss")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def trial_row(t: FrozenTrial) -> dict[str, Any]:
    """One trial as a flat row: number, state, value, reason, duration, memory (estimate, admission wait,
    lighter form it ran in) and the key params."""
    duration = t.duration.total_seconds() if t.duration is not None else None
    state = t.state.name.lower()
    params = t.user_attrs.get("trial_config") or t.params
    row: dict[str, Any] = {
        "number": t.number,
        "state": state,
        "value": t.value,
        "reason": t.user_attrs.get("pruned_reason", "") if t.state == TrialState.PRUNED else "",
        "duration_s": round(duration, 1) if duration is not None else None,
        "est_gb": t.user_attrs.get("estimated_peak_gb"),
        "wait_s": t.user_attrs.get("admission_wait_s"),  # waited for GPU memory (--par)
        "ran_as": t.user_attrs.get("elastic_form", ""),  # a lighter equivalent form (hpo.elastic)
    }
    for key in KEY_PARAMS:
        row[key] = params.get(key)
    return row


def render_trials(rows: list[dict[str, Any]]) -> str:
    """A plain aligned text table (readable in logs and pipes)."""
    if not rows:
        return "no trials"
    cols = list(rows[0])
    cells = [[_fmt(r[c]) if r[c] is not None else "-" for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def best_trial(study: optuna.Study) -> FrozenTrial:
    """The best complete trial, or a StorageError saying there is none yet."""
    try:
        return study.best_trial
    except ValueError as exc:
        raise StorageError(
            f"study '{study.study_name}' has no complete trial yet",
            "run `hpo tune` until at least one trial completes",
        ) from exc


def describe_best(study: optuna.Study) -> dict[str, Any]:
    """The best trial as a JSON-able mapping (with its last test-split evaluation, if any)."""
    t = best_trial(study)
    test = study.user_attrs.get("test_evaluation")
    return {
        "number": t.number,
        "value": t.value,
        "params": dict(t.params),
        "config": t.user_attrs.get("final_config") or t.user_attrs.get("trial_config"),
        "best_epoch": t.user_attrs.get("best_epoch"),
        "estimated_peak_gb": t.user_attrs.get("estimated_peak_gb"),
        "mlflow_run_id": t.user_attrs.get("mlflow_run_id"),
        "test": test if test and test.get("trial") == t.number else None,
    }
