"""The report's Pareto figure for a multi-objective study (``hpo tune --objectives``): the metric against the
second objective (peak_memory when it is one), every complete trial a point, the front highlighted and joined
in order, and the card's memory limit drawn as a line when peak_memory is an objective."""

from __future__ import annotations

from typing import Any

import optuna
import plotly.graph_objects as go
from optuna.trial import TrialState

from hpo.results.pareto import front_trials, objective_names, unit
from hpo.trial import keys as K

FRONT_COLOUR = "#d62728"
OTHER_COLOUR = "#9ab"


def axes(names: list[str]) -> tuple[int, int]:
    """(x, y) objective indices: y the metric, x peak_memory when it is an objective, else the second."""
    return (names.index("peak_memory") if "peak_memory" in names else 1), 0


def card_gb(study: optuna.Study) -> float | None:
    """The card the trials were sized against (GB), the largest one recorded (None: no card)."""
    sizes = [t.user_attrs.get(K.GPU_GB) for t in study.get_trials(deepcopy=False)]
    known = [float(s) for s in sizes if isinstance(s, int | float)]
    return max(known) if known else None


def _label(name: str) -> str:
    return f"{name} ({unit(name)})" if unit(name) else f"{name} (val)"


def pareto(study: optuna.Study) -> tuple[Any, str]:
    """(figure or None, note)."""
    if len(study.directions) < 2:
        return None, "a single-objective study (hpo tune --objectives draws a Pareto front)"
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
    if not done:
        return None, "no complete trial yet"
    names = objective_names(study)
    xi, yi = axes(names)
    on_front = {t.number for t in front_trials(study)}
    fig = go.Figure()
    for label, members, colour, size in (
        ("other trials", [t for t in done if t.number not in on_front], OTHER_COLOUR, 8),
        (
            "Pareto front",
            sorted((t for t in done if t.number in on_front), key=lambda t: t.values[xi]),
            FRONT_COLOUR,
            12,
        ),
    ):
        if not members:
            continue
        fig.add_trace(
            go.Scatter(
                x=[t.values[xi] for t in members],
                y=[t.values[yi] for t in members],
                mode="lines+markers" if label == "Pareto front" else "markers",
                name=label,
                marker={"color": colour, "size": size},
                line={"color": colour},
                text=[f"trial {t.number}" for t in members],
                hovertemplate="%{text}<br>%{x:.4g}, %{y:.4f}<extra></extra>",
            )
        )
    fig.update_layout(xaxis_title=_label(names[xi]), yaxis_title=_label(names[yi]), showlegend=True)
    card = card_gb(study) if names[xi] == "peak_memory" else None
    if card is not None:
        fig.add_vline(x=card, line_dash="dash", line_color="#555", annotation_text=f"card {card:.1f} GB")
    others = [n for i, n in enumerate(names) if i not in (xi, yi)]
    note = f"{len(on_front)} of {len(done)} complete trials on the front (no other trial beats them on all)"
    if others:
        note += f"; also an objective, not drawn: {', '.join(others)}"
    if names[xi] == "peak_memory" and card is None:
        note += "; no card size recorded (run with --gpu-memory or on a GPU to see its limit)"
    return fig, note
