"""The answer `hpo report` opens with, as data (no plotting, unit-testable): the best value named by its
metric beside the agent's trivial baseline, the best config with only the fields it uses, counts by
outcome, wall time and card; and the points of the optimization history (pruned and OOM trials included).

A study with several objectives is summarised by its first objective (``Summary.objectives`` says how many).
The baseline is what ``hpo tune`` records with the study (``BASELINE_ATTR``); a study from before it was
recorded has none, and the summary says so instead of inventing one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hpo.results.report_data import ReportData, outcome
from hpo.storage.study import AGENT_ATTR, BASELINE_ATTR
from hpo.trial import keys as K

LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "lora_targets", "quant")
IMPORTANCE_MIN_TRIALS = 20  # fewer finished trials: importances are flagged unreliable


def fmt(value: Any, digits: int = 3) -> str:
    """A value as the report prints it: floats to ``digits`` significant digits, the rest as they are."""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def used_config(config: dict[str, Any]) -> dict[str, Any]:
    """The fields a trial config uses: no LoRA fields without LoRA (lora_r 0 or absent: an encoder or full
    fine-tuning), no frozen layers with it, the loss's own parameter only for that loss, quant when set."""
    c = {k: v for k, v in config.items() if not isinstance(v, (dict, list))}
    lora = isinstance(c.get("lora_r"), int) and c["lora_r"] > 0
    drop = set() if lora else set(LORA_FIELDS)
    if lora:
        drop.add("frozen_layers")
    if c.get("quant") == "none":
        drop.add("quant")
    if c.get("loss", "label_smoothing") != "label_smoothing":
        drop.add("label_smoothing")
    if c.get("loss", "focal") != "focal":
        drop.add("focal_gamma")
    return {k: v for k, v in c.items() if k not in drop}


def trial_config(t: FrozenTrial) -> dict[str, Any]:
    """The config the trial sampled (its recorded TrialConfig, else its params): the fields it uses."""
    return used_config(dict(t.user_attrs.get(K.TRIAL_CONFIG) or t.params))


def short_config(config: dict[str, Any], per_line: int = 4) -> str:
    """``k=v`` pairs, rounded, a few per line (a chart's hover)."""
    pairs = [f"{k}={fmt(v)}" for k, v in config.items()]
    return "<br>".join(", ".join(pairs[i : i + per_line]) for i in range(0, len(pairs), per_line))


def varied_params(trials: list[FrozenTrial]) -> list[str]:
    """Parameters that took more than one value among ``trials`` (sorted); the others are constants."""
    seen: dict[str, set[str]] = {}
    for t in trials:
        for k, v in t.params.items():
            seen.setdefault(k, set()).add(repr(v))
    return sorted(k for k, values in seen.items() if len(values) > 1)


def constant_params(trials: list[FrozenTrial]) -> list[str]:
    """Parameters that never varied among ``trials`` (sorted)."""
    varied = set(varied_params(trials))
    return sorted({k for t in trials for k in t.params} - varied)


@dataclass(frozen=True)
class Baseline:
    metric: str  # the agent's metric, e.g. macro_f1 ("objective value" when the study does not say)
    name: str  # e.g. "majority-class baseline"
    value: float | None  # None: not recorded (a study from before hpo recorded it)


def baseline(study: optuna.Study) -> Baseline:
    """The recorded baseline; for an older study, the metric of its agent and no value."""
    rec = study.user_attrs.get(BASELINE_ATTR)
    if isinstance(rec, dict) and rec.get("metric"):
        value = rec.get("value")
        return Baseline(str(rec["metric"]), str(rec.get("name", "baseline")), _num(value))
    try:
        from hpo.agents import get_agent

        agent = get_agent(str(study.user_attrs.get(AGENT_ATTR)))
        return Baseline(agent.metric_name, agent.baseline_name, None)
    except Exception:  # no agent recorded, or one this hpo does not ship
        return Baseline("objective value", "baseline", None)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def first_value(t: FrozenTrial) -> float | None:
    """The first objective's value of a complete trial (None otherwise)."""
    return t.values[0] if t.state == TrialState.COMPLETE and t.values else None


def maximizing(study: optuna.Study) -> bool:
    return study.directions[0] == StudyDirection.MAXIMIZE


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best complete trial by the first objective (never raises; any number of objectives)."""
    done = [t for t in study.get_trials(deepcopy=False) if first_value(t) is not None]
    if not done:
        return None
    key = lambda t: first_value(t) or 0.0  # noqa: E731
    return max(done, key=key) if maximizing(study) else min(done, key=key)


@dataclass
class Summary:
    """The summary box."""

    baseline: Baseline
    direction: str  # of the first objective
    objectives: int
    best_value: float | None
    best_trial: int | None
    best_config: dict[str, Any]
    counts: dict[str, int]  # complete, pruned, pruned: oom, failed, running (0s left out)
    pruned_reasons: dict[str, int] = field(default_factory=dict)  # the non-OOM pruned ones by reason
    wall_s: float | None = None
    card_gb: float | None = None

    @property
    def beats_baseline(self) -> bool | None:
        """Whether the best value is strictly better than the baseline (None: one of them is missing)."""
        if self.best_value is None or self.baseline.value is None:
            return None
        if self.direction == "maximize":
            return self.best_value > self.baseline.value
        return self.best_value < self.baseline.value


def summarize(study: optuna.Study, data: ReportData) -> Summary:
    best = best_trial(study)
    counts = {"complete": 0, "pruned": 0, "pruned: oom": 0, "failed": 0, "running": 0}
    reasons: dict[str, int] = {}
    for name, n in data.outcomes.items():
        if name.startswith("pruned: ") and name != "pruned: oom":
            counts["pruned"] += n
            reasons[name.removeprefix("pruned: ")] = n
        elif name in counts:
            counts[name] += n
    ends = [s.end_s if s.end_s is not None else data.now_s for s in data.spans]
    return Summary(
        baseline=baseline(study),
        direction=study.directions[0].name.lower(),
        objectives=len(study.directions),
        best_value=None if best is None else first_value(best),
        best_trial=None if best is None else best.number,
        best_config={} if best is None else trial_config(best),
        counts={k: v for k, v in counts.items() if v or k != "running"},
        pruned_reasons=reasons,
        wall_s=max(ends) if ends else None,
        card_gb=data.card_gb,
    )


@dataclass(frozen=True)
class HistoryPoint:
    """One finished trial on the optimization history: a complete one at its value, a pruned one at its last
    reported value or with no value at all (pruned before any report: OOM, estimate; failed). ``config``: the
    fields it uses that differ between trials (its hover)."""

    number: int
    outcome: str
    value: float | None
    config: dict[str, Any]


def history(study: optuna.Study) -> list[HistoryPoint]:
    out = []
    for t in study.get_trials(deepcopy=False):
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
            continue
        value = first_value(t)
        if t.state == TrialState.PRUNED and t.intermediate_values:
            value = t.intermediate_values[max(t.intermediate_values)]
        out.append(HistoryPoint(t.number, outcome(t), value, trial_config(t)))
    keys = {k for p in out for k in p.config}
    seen = {k: {repr(p.config.get(k, ...)) for p in out} for k in keys}
    keep = {k for k, values in seen.items() if len(values) > 1}  # the hover's config: what tells trials apart
    return [
        HistoryPoint(p.number, p.outcome, p.value, {k: v for k, v in p.config.items() if k in keep})
        for p in out
    ]
