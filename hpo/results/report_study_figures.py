"""The report's search figures: the optimization history (our own: the metric by name, the baseline as a line,
pruned and OOM trials marked), hyperparameter importances and parallel coordinates of the top trials
(``optuna.visualization``, the value axis named by the metric, parameters that never varied left out).

Each returns (figure or None, a note: why none, or what the reader should know about it). A study with
several objectives is drawn by its first one.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState

from hpo.results.report_figures import colour
from hpo.results.report_summary import (
    IMPORTANCE_MIN_TRIALS,
    HistoryPoint,
    Summary,
    first_value,
    fmt,
    maximizing,
    short_config,
    varied_params,
)
from hpo.storage.study import FINISHED_STATES

TOP_TRIALS = 20  # parallel coordinates show the best ones, not every trial
GROUPS = (  # history marker groups: (legend name, symbol, colour)
    ("complete", "circle", colour("complete")),
    ("pruned", "triangle-down", colour("pruned: early_stop")),
    ("OOM (pruned)", "x", colour("pruned: oom")),
    ("failed", "square-open", colour("failed")),
)


def group(outcome: str) -> str:
    if outcome == "pruned: oom":
        return "OOM (pruned)"
    return "pruned" if outcome.startswith("pruned") else outcome


def value_title(summary: Summary) -> str:
    """The value axis: the metric's name (``macro_f1 (val)``), never "Objective Value"."""
    metric = summary.baseline.metric
    return metric if metric == "objective value" else f"{metric} (val)"


def history(points: list[HistoryPoint], summary: Summary) -> tuple[go.Figure | None, str]:
    """Every finished trial by number, the best so far, and the baseline as a horizontal line; trials
    without a value (pruned before any report, OOM, failed) sit on the chart's bottom line."""
    if not any(p.outcome == "complete" for p in points):
        return None, "no complete trial yet"
    metric, base = summary.baseline.metric, summary.baseline.value
    values = [p.value for p in points if p.value is not None] + ([base] if base is not None else [])
    low, high = min(values), max(values)
    floor = low - 0.05 * ((high - low) or abs(low) or 1.0)
    fig = go.Figure()
    for name, symbol, col in GROUPS:
        group_points = [p for p in points if group(p.outcome) == name]
        if not group_points:
            continue
        fig.add_trace(
            go.Scatter(
                x=[p.number for p in group_points],
                y=[floor if p.value is None else p.value for p in group_points],
                mode="markers",
                name=name,
                marker={"symbol": symbol, "color": col, "size": 11 if symbol == "x" else 9},
                hovertext=[_hover(p, metric) for p in group_points],
                hoverinfo="text",
            )
        )
    done = sorted(
        (p for p in points if p.outcome == "complete" and p.value is not None), key=lambda p: p.number
    )
    best, xs, ys = None, [], []
    for p in done:
        assert p.value is not None
        if best is None or (p.value > best if summary.direction == "maximize" else p.value < best):
            best = p.value
        xs.append(p.number)
        ys.append(best)
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line_shape="hv", name="best so far", hoverinfo="skip"))
    if base is not None:
        numbers = [p.number for p in points]
        fig.add_trace(
            go.Scatter(
                x=[min(numbers) - 0.5, max(numbers) + 0.5],
                y=[base, base],
                mode="lines",
                line={"dash": "dash", "color": "#555555"},
                name=f"{summary.baseline.name} {fmt(base, 4)}",
                hovertext=f"{summary.baseline.name}: {metric} {fmt(base, 4)}",
                hoverinfo="text",
            )
        )
    fig.update_layout(xaxis_title="trial", yaxis_title=value_title(summary), showlegend=True)
    fig.update_xaxes(tickformat="d", dtick=1 if len(points) <= 30 else None)  # whole trial numbers
    note = "Trials without a value (pruned before any report, OOM, failed) sit on the bottom line."
    return fig, note if len(done) < len(points) else ""


def _hover(p: HistoryPoint, metric: str) -> str:
    value = "no value" if p.value is None else f"{metric} {fmt(p.value, 4)}"
    return f"trial {p.number} · {p.outcome}<br>{value}<br>{short_config(p.config)}"


def _target(study: optuna.Study) -> Any:
    """Optuna's plots of a multi-objective study need a target: its first objective."""
    return (lambda t: t.values[0]) if len(study.directions) > 1 else None


def _left_out(plotted: list[str], trials: list[FrozenTrial]) -> str:
    constant = sorted({k for t in trials for k in t.params} - set(plotted))
    return f"Left out (never varied): {', '.join(constant)}." if constant else ""


def importances(study: optuna.Study, summary: Summary) -> tuple[go.Figure | None, str]:
    """fANOVA importances of the parameters that varied among the complete trials; flagged unreliable below
    ``IMPORTANCE_MIN_TRIALS`` finished trials."""
    complete = [t for t in study.get_trials(deepcopy=False) if first_value(t) is not None]
    params = varied_params(complete)
    if len(complete) < 2 or not params:
        return None, "needs at least two complete trials whose parameters differ"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fig = optuna.visualization.plot_param_importances(
                study, params=params, target=_target(study), target_name=value_title(summary)
            )
    except (ValueError, RuntimeError) as exc:
        return None, f"not computable: {str(exc).splitlines()[0][:200]}"
    if not any(len(getattr(d, "x", ()) or ()) for d in fig.data):
        return None, "needs at least two complete trials whose parameters differ"
    finished = len(study.get_trials(deepcopy=False, states=FINISHED_STATES))
    notes = [_left_out(params, complete)]
    if finished < IMPORTANCE_MIN_TRIALS:
        notes.insert(
            0, f"Unreliable below {IMPORTANCE_MIN_TRIALS} finished trials (this study has {finished})."
        )
    return fig, " ".join(n for n in notes if n)


def top_study(study: optuna.Study, n: int = TOP_TRIALS) -> optuna.Study | None:
    """An in-memory copy of the ``n`` best complete trials by the first objective."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
    if len(done) < 2:
        return None
    done.sort(key=lambda t: t.values[0], reverse=maximizing(study))
    top = optuna.create_study(directions=study.directions)
    top.add_trials(done[:n])
    return top


def parallel(study: optuna.Study, summary: Summary) -> tuple[go.Figure | None, str]:
    """Parallel coordinates of the top complete trials over the parameters that varied among them."""
    top = top_study(study)
    if top is None:
        return None, "needs at least two complete trials"
    trials = top.get_trials(deepcopy=False)
    params = varied_params(trials)
    if not params:
        return None, "no parameter varied among the top trials"
    fig = optuna.visualization.plot_parallel_coordinate(
        top, params=params, target=_target(top), target_name=value_title(summary)
    )
    return fig, _left_out(params, trials)
