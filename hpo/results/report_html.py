"""`hpo report`: one self-contained HTML file (plotly.js inlined, opens offline) about a study, running or
not.

Sections: optimization history with best-so-far, hyperparameter importances and parallel coordinates of the
top trials (``optuna.visualization``); the memory map, the estimator's error, the timeline, the reserved
memory over time and the outcome counts (``hpo.results.report_figures``); the OOM table (`hpo oom`). A
section with nothing recorded says so instead of drawing an empty chart.
"""

from __future__ import annotations

import html
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from hpo.errors import ConfigError
from hpo.results import report_figures as figs
from hpo.results.oom_report import ROW_KEYS, oom_rows_from_optuna, summarize, summary_line
from hpo.results.report_data import ReportData, build
from hpo.storage.study import load_existing

TOP_TRIALS = 20  # parallel coordinates show the best ones, not every trial


def _top_study(study: optuna.Study, n: int) -> optuna.Study | None:
    """An in-memory copy of the ``n`` best complete trials (parallel coordinates of the top trials)."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    if len(done) < 2:
        return None
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    done.sort(key=lambda t: t.value if t.value is not None else 0.0, reverse=maximize)
    top = optuna.create_study(direction=study.direction)
    top.add_trials(done[:n])
    return top


def _optuna_figures(study: optuna.Study) -> list[tuple[str, Any, str]]:
    """(title, figure or None, why none) for the three study plots optuna.visualization draws."""
    import optuna.visualization as vis

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    out: list[tuple[str, Any, str]] = []
    if complete:
        out.append(("Optimization history (best so far)", vis.plot_optimization_history(study), ""))
    else:
        out.append(("Optimization history (best so far)", None, "no complete trial yet"))
    importances: Any = None
    why = "needs at least two complete trials whose parameters differ"
    if len(complete) >= 2:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importances = vis.plot_param_importances(study)
        except (ValueError, RuntimeError) as exc:
            why = f"not computable: {str(exc).splitlines()[0][:200]}"
        if importances is not None and not any(len(getattr(d, "x", ()) or ()) for d in importances.data):
            importances = None
    out.append(("Hyperparameter importances", importances, why))
    top = _top_study(study, TOP_TRIALS)
    parallel = vis.plot_parallel_coordinate(top) if top is not None else None
    title = f"Parallel coordinates of the top {TOP_TRIALS} complete trials"
    out.append((title, parallel, "needs at least two complete trials"))
    return out


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


def _section(title: str, fig: Any, why: str) -> str:
    head = f"<h2>{html.escape(title)}</h2>"
    if fig is None:
        return f'{head}<p class="missing">Not shown: {html.escape(why)}.</p>'
    fig.update_layout(title=None, height=460, margin={"t": 30})
    body = fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})
    return f'<section class="chart">{head}{body}</section>'


STYLE = """body{font-family:sans-serif;margin:1.5em;max-width:1200px}table.oom{border-collapse:collapse;
font-size:.85em}table.oom td,table.oom th{border:1px solid #ccc;padding:2px 6px}.missing{color:#a00}"""


def render(study: optuna.Study, data: ReportData, generated_at: float) -> str:
    """The whole page as one string: plotly.js inlined once, each figure a div."""
    from plotly.offline import get_plotlyjs

    card = "not recorded" if data.card_gb is None else f"{data.card_gb:.1f} GB"
    headroom = "" if data.headroom_gb is None else f", headroom {data.headroom_gb:.1f} GB"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(generated_at))
    parts = [
        f"<h1>hpo report: study {html.escape(data.study)}</h1>",
        f"<p>{data.n_trials} trials ({html.escape(_counts(data))}), direction {data.direction}; "
        f"card {card}{headroom}; generated {stamp} (a running study shows the trials recorded so far).</p>",
    ]
    if data.not_recorded:
        items = "".join(f"<li>{html.escape(m)}</li>" for m in data.not_recorded)
        parts.append(f"<p>Not recorded by this study, so not drawn:</p><ul>{items}</ul>")
    parts += [_section(title, fig, why) for title, fig, why in _optuna_figures(study)]
    ours: list[tuple[str, Any, str]] = [
        ("Memory map", figs.memory_map(data), "no trial has an estimate yet"),
        (
            "Estimator error",
            figs.error_distribution(data),
            "no trial measured its peak (none on a GPU)",
        ),
        ("Timeline", figs.timeline(data), "no trial started yet"),
        ("Reserved memory over time", figs.reserved_memory(data), "no memory ledger (run without --par)"),
        ("Trials by outcome", figs.outcome_counts(data), "no trials yet"),
    ]
    parts += [_section(title, fig, why) for title, fig, why in ours]
    if data.recycled:
        parts.append(f"<p>Recycled or replaced workers: {html.escape(', '.join(data.recycled))}.</p>")
    parts.append(f"<h2>OOM trials (hpo oom)</h2>{_oom_table(study)}")
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>hpo report: {html.escape(data.study)}</title><style>{STYLE}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        + "\n".join(parts)
        + "</body></html>"
    )


def _counts(data: ReportData) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(data.outcomes.items())) or "none yet"


def write_report(study: optuna.Study, out: Path) -> Path:
    """Write the study's report to ``out`` (parents created) and return its path."""
    now = time.time()
    page = render(study, build(study, now), now)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot write the report to {out}: {exc.strerror}", "pass a writable --out"
        ) from exc
    return out


def show_report(study: str, storage_url: str, out: Path | None) -> Path:
    """`hpo report`: the report of ``study`` written to ``out`` (default ``<study>-report.html``)."""
    s = load_existing(study, storage_url)
    return write_report(s, out if out is not None else Path(f"{study}-report.html"))
