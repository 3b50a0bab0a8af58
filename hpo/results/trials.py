"""Reading a study's trials back: rows for `hpo trials`, outcome counts for `hpo tune` and the launcher."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.errors import ConfigError
from hpo.storage.study import load_existing
from hpo.trial import keys as K

STATES: tuple[str, ...] = (*K.TRIAL_STATES, "all")
KEY_PARAMS = ("model", "learning_rate", "batch_size", "grad_accum", "max_length", "precision", "loss")
REASON_WIDTH = 80  # a FAIL trial's error, first line, in the table


def _reason(t: FrozenTrial) -> str:
    """Why a trial did not complete: a PRUNED one's reason, a FAIL one's error (its first line, cut short)."""
    if t.state == TrialState.PRUNED:
        return str(t.user_attrs.get(K.PRUNED_REASON, ""))
    if t.state != TrialState.FAIL:
        return ""
    lines = str(t.user_attrs.get(K.ERROR) or "").strip().splitlines()
    first = lines[0].strip() if lines else ""
    return first if len(first) <= REASON_WIDTH else first[: REASON_WIDTH - 3].rstrip() + "..."


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def trial_row(t: FrozenTrial) -> dict[str, Any]:
    """One trial as a flat row: number, state, value, reason, duration, memory (estimate, admission wait,
    lighter form it ran in) and the key params."""
    duration = t.duration.total_seconds() if t.duration is not None else None
    state = t.state.name.lower()
    params = t.user_attrs.get(K.TRIAL_CONFIG) or t.params
    row: dict[str, Any] = {
        "number": t.number,
        "state": state,
        "value": t.values[0] if t.values else None,  # the metric (the first of --objectives)
        "reason": _reason(t),
        "duration_s": round(duration, 1) if duration is not None else None,
        "est_gb": t.user_attrs.get(K.ESTIMATED_PEAK_GB),
        "wait_s": t.user_attrs.get(K.ADMISSION_WAIT_S),  # waited for GPU memory (--par)
        "ran_as": t.user_attrs.get(K.ELASTIC_FORM, ""),  # a lighter equivalent form (hpo.trial.elastic)
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


def count_states(study: optuna.Study) -> dict[str, int]:
    """Trials by outcome, pruned ones split by reason."""
    counts = {"complete": 0, **{f"pruned_{r}": 0 for r in K.PRUNED_REASONS}, "fail": 0, "running": 0}
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.COMPLETE:
            counts["complete"] += 1
        elif t.state == TrialState.PRUNED:
            key = f"pruned_{t.user_attrs.get(K.PRUNED_REASON, K.REASON_EARLY_STOP)}"
            counts[key] = counts.get(key, 0) + 1
        elif t.state == TrialState.FAIL:
            counts["fail"] += 1
        elif t.state == TrialState.RUNNING:
            counts["running"] += 1
    return counts


def check_filter(state: str | None, reason: str | None) -> str:
    """``--state``/``--reason`` checked against STATES and PRUNED_REASONS; the state in lower case."""
    state_l = state.lower() if state is not None else "all"
    if state_l not in STATES:
        raise ConfigError(f"unknown --state {state!r}", f"use one of: {', '.join(STATES)}")
    if reason is not None and reason not in K.PRUNED_REASONS:
        raise ConfigError(f"unknown --reason {reason!r}", f"use one of: {', '.join(K.PRUNED_REASONS)}")
    if reason is not None and state_l not in ("pruned", "all"):
        raise ConfigError(
            f"--reason applies to pruned trials, not --state {state_l}", "drop --state or use --state pruned"
        )
    return state_l


def filter_trials(trials: Iterable[FrozenTrial], state: str | None, reason: str | None) -> list[FrozenTrial]:
    """Trials in ``state`` (None or "all": any); ``reason`` keeps PRUNED ones with that ``pruned_reason``."""
    state_l = check_filter(state, reason)
    out = []
    for t in trials:
        if state_l != "all" and t.state != TrialState[state_l.upper()]:
            continue
        pruned_for = t.user_attrs.get(K.PRUNED_REASON) if t.state == TrialState.PRUNED else None
        if reason is not None and pruned_for != reason:
            continue
        out.append(t)
    return out


def show_trials(study: str, storage_url: str, state: str | None, reason: str | None, as_json: bool) -> str:
    """`hpo trials`: the study's trials (filtered by state / pruned reason) as a table or JSON rows."""
    check_filter(state, reason)  # a bad option first, before the study is looked up
    s = load_existing(study, storage_url)
    rows = [trial_row(t) for t in filter_trials(s.get_trials(deepcopy=False), state, reason)]
    return json.dumps(rows, indent=2, default=str) if as_json else render_trials(rows)
