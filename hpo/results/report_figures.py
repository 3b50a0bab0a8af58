"""The report's own figures (plotly) from ``ReportData``: the memory map, the estimator's error, the timeline,
the ledger's reservations over time and the outcome counts. Each returns None when the study recorded nothing
to draw (the report then says what is missing instead of drawing an empty chart)."""

from __future__ import annotations

import plotly.graph_objects as go

from hpo.results.report_data import OUTCOMES, MemoryPoint, ReportData, Span
from hpo.results.report_summary import short_config, used_config

COLOURS = {
    "complete": "#2ca02c",
    "pruned: early_stop": "#1f77b4",
    "pruned: memory_estimate": "#ff7f0e",
    "pruned: oom": "#d62728",
    "pruned: admission_timeout": "#9467bd",
    "pruned: worker_deaths": "#8c564b",
    "failed": "#7f7f7f",
    "running": "#17becf",
}
MEASURES = (  # MemoryPoint field, legend name, marker symbol
    ("allocated_gb", "measured allocated", "x"),
    ("reserved_gb", "measured reserved", "diamond"),
    ("device_gb", "measured device (reserved + context, or NVML)", "square"),
)


def colour(outcome: str) -> str:
    return COLOURS.get(outcome, "#bcbd22")


def _ordered(outcomes: set[str]) -> list[str]:
    return [o for o in OUTCOMES if o in outcomes] + sorted(outcomes - set(OUTCOMES))


def _hover(p: MemoryPoint, what: str, gb: float | None) -> str:
    """Short: the trial, its value in GB, the fields its config uses (rounded; no LoRA fields without it)."""
    lines = [f"trial {p.number} · {p.outcome}"]
    if gb is not None:
        lines.append(f"{what} {gb:.2f} GB")
    if p.ran_as:
        lines.append(f"ran as: {p.ran_as}")
    lines.append(short_config(used_config(p.config)))
    return "<br>".join(lines)


def _card_lines(fig: go.Figure, data: ReportData) -> None:
    if data.card_gb is None:
        return
    fig.add_hline(y=data.card_gb, line_dash="solid", line_color="black", annotation_text="card")
    if data.headroom_gb:
        usable = data.card_gb - data.headroom_gb
        fig.add_hline(y=usable, line_dash="dash", line_color="gray", annotation_text="card - headroom")


def memory_map(data: ReportData) -> go.Figure | None:
    """Per trial: the estimate (circles, coloured by outcome) and each measured peak where recorded."""
    points = [p for p in data.points if p.estimated_gb is not None]
    if not points:
        return None
    fig = go.Figure()
    for name in _ordered({p.outcome for p in points}):
        group = [p for p in points if p.outcome == name]
        fig.add_trace(
            go.Scatter(
                x=[p.number for p in group],
                y=[p.estimated_gb for p in group],
                mode="markers",
                name=f"estimated · {name}",
                marker={"color": colour(name), "size": 10, "symbol": "circle-open", "line": {"width": 2}},
                hovertext=[_hover(p, "estimated", p.estimated_gb) for p in group],
                hoverinfo="text",
            )
        )
    for field_name, label, symbol in MEASURES:
        measured = [p for p in points if getattr(p, field_name) is not None]
        if measured:
            fig.add_trace(
                go.Scatter(
                    x=[p.number for p in measured],
                    y=[getattr(p, field_name) for p in measured],
                    mode="markers",
                    name=label,
                    marker={"color": [colour(p.outcome) for p in measured], "symbol": symbol, "size": 9},
                    hovertext=[_hover(p, label, getattr(p, field_name)) for p in measured],
                    hoverinfo="text",
                )
            )
    _card_lines(fig, data)
    fig.update_layout(
        title="Memory map: estimated vs measured peak per trial", xaxis_title="trial", showlegend=True
    )
    fig.update_yaxes(title="GB", rangemode="tozero")
    fig.update_xaxes(tickformat="d", dtick=1 if len(points) <= 30 else None)  # whole trial numbers
    return fig


def error_distribution(data: ReportData) -> go.Figure | None:
    """Measured device peak / estimate - 1, in percent, over the trials that measured one."""
    errors = [100.0 * e for e in data.errors]
    if not errors:
        return None
    fig = go.Figure(go.Histogram(x=errors, nbinsx=min(30, max(5, len(errors))), marker_color="#1f77b4"))
    fig.update_layout(
        title=f"Estimator error over {len(errors)} measured trials (positive: measured above the estimate)",
        xaxis_title="measured / estimated - 1 (%)",
        yaxis_title="trials",
    )
    return fig


def _span_text(s: Span) -> str:
    parts = [f"trial {s.number} · {s.outcome}", f"worker {s.worker}"]
    if s.wait_s:
        parts.append(f"waited {s.wait_s:.1f}s for memory")
    if s.ran_as:
        parts.append(f"ran as: {s.ran_as}")
    if s.oom:
        parts.append("ran out of memory")
    return "<br>".join(parts)


def timeline(data: ReportData) -> go.Figure | None:
    """Trials per worker over time: admission waits (grey), runs coloured by outcome, lighter forms hatched,
    OOMs marked with a cross; a worker slot's later generations (w0.1, ...) are recycled or replaced ones."""
    if not data.spans:
        return None
    now_s = data.now_s
    fig = go.Figure()
    shown: set[str] = set()
    waits = [s for s in data.spans if s.wait_s and s.admitted_s is not None]
    if waits:
        fig.add_trace(
            go.Bar(
                y=[s.worker for s in waits],
                x=[s.admitted_s - s.start_s for s in waits if s.admitted_s is not None],
                base=[s.start_s for s in waits],
                orientation="h",
                name="waiting for memory",
                marker_color="#dddddd",
                hovertext=[_span_text(s) for s in waits],
                hoverinfo="text",
            )
        )
    for s in data.spans:
        begin = s.admitted_s if s.admitted_s is not None else s.start_s
        end = s.end_s if s.end_s is not None else now_s
        fig.add_trace(
            go.Bar(
                y=[s.worker],
                x=[max(end - begin, 0.01)],
                base=[begin],
                orientation="h",
                name=s.outcome,
                legendgroup=s.outcome,
                showlegend=s.outcome not in shown,
                marker={"color": colour(s.outcome), "pattern": {"shape": "/" if s.ran_as else ""}},
                hovertext=[_span_text(s)],
                hoverinfo="text",
                text=[str(s.number)],
                textposition="inside",
            )
        )
        shown.add(s.outcome)
    ooms = [s for s in data.spans if s.oom]
    if ooms:
        fig.add_trace(
            go.Scatter(
                x=[s.end_s if s.end_s is not None else now_s for s in ooms],
                y=[s.worker for s in ooms],
                mode="markers",
                name="OOM",
                marker={"symbol": "x", "size": 12, "color": "black"},
                hovertext=[_span_text(s) for s in ooms],
                hoverinfo="text",
            )
        )
    workers = sorted({s.worker for s in data.spans})
    fig.update_layout(
        title="Timeline: trials per worker (hatched: a lighter equivalent form)",
        barmode="overlay",
        showlegend=True,
        xaxis_title="seconds since the first trial started",
        yaxis={"categoryorder": "array", "categoryarray": workers[::-1]},
    )
    return fig


def reserved_memory(data: ReportData) -> go.Figure | None:
    """The memory the admitted trials held over time (the sum of their estimates): on the GPU, against the
    card, and in host RAM."""
    if not data.reserved and not data.host_reserved:
        return None
    fig = go.Figure()
    for steps, name in ((data.reserved, "GPU ledger (trial estimates)"), (data.host_reserved, "host RAM")):
        if steps:
            xs, ys = zip(*steps, strict=True)
            fig.add_trace(go.Scatter(x=list(xs), y=list(ys), mode="lines", line_shape="hv", name=name))
    if data.reserved:
        _card_lines(fig, data)
    fig.update_layout(
        title="Reserved memory over time", xaxis_title="seconds", yaxis_title="GB", showlegend=True
    )
    return fig


def outcome_counts(data: ReportData) -> go.Figure | None:
    if not data.outcomes:
        return None
    names = _ordered(set(data.outcomes))
    fig = go.Figure(
        go.Bar(
            x=names,
            y=[data.outcomes[n] for n in names],
            marker_color=[colour(n) for n in names],
            text=[data.outcomes[n] for n in names],
        )
    )
    fig.update_layout(title="Trials by outcome (pruned ones by reason)", yaxis_title="trials")
    return fig
