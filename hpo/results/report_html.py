"""`hpo report`: one self-contained HTML file (plotly.js inlined, opens offline) about a study, running or
not.

It opens with the answer (``summary_box``: the best value by its metric beside the agent's baseline, the best
config, counts by outcome, wall time, card), then the figures of ``FIGURES`` in order: the optimization
history, importances and parallel coordinates (``hpo.results.report_study_figures``); the memory map, the
estimator's error, the timeline, the reserved memory over time and the outcome counts
(``hpo.results.report_figures``); then the OOM table (`hpo oom`) and a footer with what the study did not
record. A section with nothing recorded says so (quietly) instead of drawing an empty chart.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from hpo.errors import ConfigError
from hpo.results import report_figures as figs
from hpo.results import report_study_figures as sf
from hpo.results.oom_report import ROW_KEYS, oom_rows_from_optuna, summarize, summary_line
from hpo.results.report_data import ReportData, build, report_file
from hpo.results.report_pareto import pareto
from hpo.results.report_summary import Summary, fmt, history
from hpo.results.report_summary import summarize as summarize_study
from hpo.storage.study import load_existing


def _oom_table(study: optuna.Study) -> str:
    rows = oom_rows_from_optuna(study)
    line = html.escape(summary_line(summarize(rows)))
    if not rows:
        return f"<p>{line}</p>"
    head = "".join(f"<th>{html.escape(k)}</th>" for k in ROW_KEYS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(r.get(k)))}</td>" for k in ROW_KEYS) + "</tr>" for r in rows
    )
    return f'<table class="oom"><tr>{head}</tr>{body}</table><p>{line}</p>'


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Page:
    """What the figures are drawn from: the study, its report data and its summary."""

    study: optuna.Study
    data: ReportData
    summary: Summary


Figure = Callable[[Page], tuple[Any, str]]  # (figure or None, a note: why none, or what to know about it)


def _ours(draw: Callable[[ReportData], Any], why: str) -> Figure:
    def figure(page: Page) -> tuple[Any, str]:
        fig = draw(page.data)
        return fig, "" if fig is not None else why

    return figure


# The page's figures in order: (id, title, builder); each is drawn in <section id="fig-<id>">. A new figure is
# one more entry (e.g. a Pareto front: its builder returns (None, why) for a single-objective study).
FIGURES: list[tuple[str, str, Figure]] = [
    ("history", "Optimization history", lambda p: sf.history(history(p.study), p.summary)),
    ("importances", "Hyperparameter importances", lambda p: sf.importances(p.study, p.summary)),
    (
        "parallel",
        f"Parallel coordinates of the top {sf.TOP_TRIALS} complete trials",
        lambda p: sf.parallel(p.study, p.summary),
    ),
    ("pareto", "Pareto front", lambda p: pareto(p.study)),  # multi-objective studies (hpo tune --objectives)
    ("memory", "Memory map", _ours(figs.memory_map, "no trial has an estimate yet")),
    (
        "error",
        "Estimator error",
        _ours(figs.error_distribution, "no trial measured its peak (none on a GPU)"),
    ),
    ("timeline", "Timeline", _ours(figs.timeline, "no trial started yet")),
    (
        "reserved",
        "Reserved memory over time",
        _ours(figs.reserved_memory, "no memory ledger (run without --par)"),
    ),
    ("outcomes", "Trials by outcome", _ours(figs.outcome_counts, "no trials yet")),
]


def _section(key: str, title: str, fig: Any, note: str) -> str:
    head = f'<section class="chart" id="fig-{html.escape(key)}"><h2>{html.escape(title)}</h2>'
    if fig is None:
        return f'{head}<p class="missing">Not shown: {html.escape(note)}.</p></section>'
    fig.update_layout(title=None, height=460, margin={"t": 30})
    body = fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})
    extra = f'<p class="note">{html.escape(note)}</p>' if note else ""
    return f"{head}{body}{extra}</section>"


STYLE = """body{font-family:sans-serif;margin:1.5em;max-width:1200px}table.oom{border-collapse:collapse;
font-size:.85em}table.oom td,table.oom th{border:1px solid #ccc;padding:2px 6px}.missing,.note{color:#666}
#summary{border:1px solid #bbb;border-radius:6px;padding:.6em 1em;background:#f7f7f7}
#summary p{margin:.35em 0}#summary .best{font-size:1.25em}
.warn{color:#8a4b00;background:#fff3cd;padding:.3em .5em;border-radius:4px}
footer{margin-top:2em;border-top:1px solid #ddd;color:#777;font-size:.85em}"""


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def summary_box(summary: Summary, data: ReportData) -> str:
    """The first screen: best value by metric beside the baseline, best config, counts, wall time, card."""
    b, e = summary.baseline, html.escape
    metric = sf.value_title(summary)
    base = f"{e(b.name)} {fmt(b.value, 4)}" if b.value is not None else f"{e(b.name)}: not recorded"
    rows = []
    if summary.objectives > 1:
        rows.append(
            f"<p>Multi-objective study ({summary.objectives} objectives): summarised by the first.</p>"
        )
    if summary.best_value is None:
        rows.append(f'<p class="best">No complete trial yet · {base}</p>')
    else:
        rows.append(
            f'<p class="best">Best {e(metric)}: <b>{fmt(summary.best_value, 4)}</b> '
            f"(trial {summary.best_trial}) · {base}</p>"
        )
        if summary.beats_baseline is False:
            rows.append(
                f'<p class="warn">Warning: the best trial does not beat the {e(b.name)} '
                f"({fmt(summary.best_value, 4)} vs {fmt(b.value, 4)}): the search found nothing better than "
                "that trivial prediction.</p>"
            )
        config = ", ".join(f"{k}={fmt(v)}" for k, v in summary.best_config.items())
        rows.append(f"<p>Best config: {e(config)}</p>")
    c = summary.counts
    reasons = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(summary.pruned_reasons.items()))
    pruned = f"pruned {c['pruned']}" + (f" ({reasons})" if reasons else "")
    counts = [f"complete {c['complete']}", pruned, f"OOM-pruned {c['pruned: oom']}", f"failed {c['failed']}"]
    if c.get("running"):
        counts.append(f"running {c['running']}")
    rows.append(f"<p>Trials: {' · '.join(counts)}</p>")
    wall = "-" if summary.wall_s is None else _duration(summary.wall_s)
    card = "not recorded" if data.card_gb is None else f"{data.card_gb:.1f} GB"
    headroom = "" if data.headroom_gb is None else f" (headroom {data.headroom_gb:.1f} GB)"
    rows.append(f"<p>Wall time {wall} · card {card}{headroom} · {summary.direction} {e(b.metric)}</p>")
    return '<section id="summary">' + "".join(rows) + "</section>"


def render(study: optuna.Study, data: ReportData, generated_at: float) -> str:
    """The whole page as one string: plotly.js inlined once, each figure a div."""
    from plotly.offline import get_plotlyjs

    page = Page(study, data, summarize_study(study, data))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(generated_at))
    parts = [f"<h1>hpo report: study {html.escape(data.study)}</h1>", summary_box(page.summary, data)]
    for key, title, draw in FIGURES:
        fig, note = draw(page)
        parts.append(_section(key, title, fig, note))
    if data.recycled:
        parts.append(f"<p>Recycled or replaced workers: {html.escape(', '.join(data.recycled))}.</p>")
    parts.append(f"<h2>OOM trials (hpo oom)</h2>{_oom_table(study)}")
    missing = "".join(f"<li>{html.escape(m)}</li>" for m in data.not_recorded)
    parts.append(
        f"<footer><p>{data.n_trials} trials; generated {stamp} (a running study shows the trials recorded so "
        "far).</p>"
        + (f"<p>Not recorded by this study, so not drawn:</p><ul>{missing}</ul>" if missing else "")
        + "</footer>"
    )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>hpo report: {html.escape(data.study)}</title><style>{STYLE}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        + "\n".join(parts)
        + "</body></html>"
    )


def write_report(study: optuna.Study, out: Path) -> Path:
    """Write the study's report to ``out`` (parents created) and return its absolute path."""
    now = time.time()
    page = render(study, build(study, now), now)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot write the report to {out}: {exc.strerror}", "pass a writable --out"
        ) from exc
    return out.resolve()


def show_report(study: str, storage_url: str, out: Path | None, output_dir: Path | None = None) -> Path:
    """`hpo report`: the report of ``study`` written to ``out`` (default: ``report_file(output_dir, study)``,
    where `hpo tune` writes it); its absolute path."""
    s = load_existing(study, storage_url)
    return write_report(s, out if out is not None else report_file(output_dir, study))
