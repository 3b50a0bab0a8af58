"""Headless Chromium on a small real study: its `hpo report` page (served from disk) renders every chart with
no console error, and `mlflow ui` on its tracking DB shows the trial runs on the page `hpo tune` points to."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState
from typer.testing import CliRunner

from hpo.commands import app
from hpo.results.report_summary import constant_params
from hpo.storage.study import BASELINE_ATTR, FINISHED_STATES
from hpo.tracking.tracker import runs_view_url
from tests.browser import chromium_path, page
from tests.support import CI_CONFIG

runner = CliRunner()

# every chart has data and drew it: plotly's traces (svg) or parallel coordinates (their own layer)
CHARTS_JS = """() => Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => ({
  data: (d.data || []).some(t => ['x', 'y', 'dimensions'].some(k => t[k] && t[k].length > 0)),
  svg: d.querySelectorAll('.main-svg').length,
  drawn: d.querySelectorAll('g.trace, g.parcoords, g.point, path.point').length,
}))"""


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chromium_path()  # skip before training when there is no browser
    out = tmp_path_factory.mktemp("browser") / "runs"
    cfg = tmp_path_factory.mktemp("cfg") / "study.yaml"
    cfg.write_text(
        CI_CONFIG.read_text()
        + "max_train_examples: 32\nfaults:\n  oom_epoch: 0\n  oom_step: 0\n  trials: [1]\n"
    )
    args = ["tune", "--config", str(cfg), "--output-dir", str(out), "--n-trials", "4", "--epochs", "1"]
    res = runner.invoke(app, [*args, "--gpu-memory", "24GB"])
    assert res.exit_code == 0, res.output
    return out


def test_report_renders_every_chart(study_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    args = ["report", "--study", "ci-tiny", "--output-dir", str(study_dir), "--out", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    shot = tmp_path / "report.png"
    with page(tmp_path / "profile") as (p, errors):
        p.goto(out.resolve().as_uri())
        p.wait_for_load_state("load")
        p.wait_for_timeout(500)
        charts = p.evaluate(CHARTS_JS)
        p.screenshot(path=str(shot), full_page=True)
        text = p.inner_text("body")
    assert errors == []
    assert len(charts) >= 6, charts  # history, importances, parallel, memory map, timeline, outcomes
    assert all(c["data"] and c["svg"] > 0 and c["drawn"] > 0 for c in charts), charts
    assert "pruned: oom" in text and "1 OOM trial" in text and "card 24.0 GB" in text
    assert shot.stat().st_size > 10_000


# the first screen and the history / parallel-coordinates charts as drawn (#summary, #fig-<id>: report_html)
ANSWER_JS = """() => {
  const div = id => document.querySelector(`#fig-${id} .plotly-graph-div`);
  const h = div('history'), par = div('parallel');
  return {
    first: document.body.children[1].id,
    summary: document.querySelector('#summary').innerText,
    yTitle: (h.querySelector('.ytitle') || {}).textContent,
    legend: Array.from(h.querySelectorAll('.legendtext')).map(e => e.textContent),
    traces: h.data.map(t => ({name: t.name, mode: t.mode, symbol: (t.marker || {}).symbol, y: t.y})),
    dims: par.layout.xaxis.ticktext,
    axes: Array.from(par.querySelectorAll('.xtick text')).map(e => e.textContent),
    footer: document.body.lastElementChild.tagName,
  };
}"""


def test_report_opens_with_the_answer(study_dir: Path, tmp_path: Path) -> None:
    """Best value by metric beside the recorded baseline and the counts first; the history named by the metric
    with the baseline line and the OOM trial marked; the constant parameter (one model) has no axis."""
    res = runner.invoke(app, ["report", "--study", "ci-tiny", "--output-dir", str(study_dir)])
    assert res.exit_code == 0, res.output
    out = Path(res.output.strip().removeprefix("report: "))
    assert out.is_absolute() and out == (study_dir / "ci-tiny-report.html").resolve()
    study = optuna.load_study(study_name="ci-tiny", storage=f"sqlite:///{study_dir / 'hpo.db'}")
    base = study.user_attrs[BASELINE_ATTR]  # recorded by `hpo tune`
    assert base["metric"] == "macro_f1" and base["name"] == "majority-class baseline"
    finished = study.get_trials(states=FINISHED_STATES)
    constant = constant_params(finished)
    assert "model" in constant  # one model in the space
    with page(tmp_path / "profile") as (p, errors):
        p.goto(out.as_uri())
        p.wait_for_load_state("load")
        p.wait_for_timeout(500)
        got = p.evaluate(ANSWER_JS)
        p.screenshot(path=str(tmp_path / "answer.png"))
    assert errors == []
    assert got["first"] == "summary" and got["footer"] == "FOOTER", got
    best = max(t.value for t in study.get_trials(states=(TrialState.COMPLETE,)) if t.value is not None)
    assert f"Best macro_f1 (val): {best:.4g}" in got["summary"], got["summary"]
    assert f"majority-class baseline {base['value']:.4g}" in got["summary"]
    complete = len(study.get_trials(states=(TrialState.COMPLETE,)))
    assert f"complete {complete} ·" in got["summary"] and "OOM-pruned 1 ·" in got["summary"]
    assert "card 24.0 GB" in got["summary"]
    assert got["yTitle"] == "macro_f1 (val)"
    line = [t for t in got["traces"] if t["name"].startswith("majority-class baseline")]
    assert len(line) == 1 and line[0]["mode"] == "lines" and set(line[0]["y"]) == {base["value"]}
    oom = [t for t in got["traces"] if t["name"] == "OOM (pruned)"]
    assert len(oom) == 1 and oom[0]["symbol"] == "x" and len(oom[0]["y"]) == 1
    assert {"OOM (pruned)", "complete", line[0]["name"]} <= set(got["legend"]), got["legend"]
    assert got["axes"] == got["dims"] and got["axes"][0] == "macro_f1 (val)", got  # one axis per parameter
    for name in constant:
        assert name not in got["dims"] and name not in got["axes"], (name, got["dims"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_mlflow_ui_opens_on_the_trial_runs(study_dir: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{(study_dir / 'mlflow.db').resolve()}"
    exp = MlflowClient(tracking_uri=uri).get_experiment_by_name("ci-tiny")
    assert exp is not None
    port = _free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    ui = subprocess.Popen(
        [str(mlflow), "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the server and its workers stop together
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5):
                    break
            except OSError:
                assert ui.poll() is None and time.monotonic() < deadline, "mlflow ui did not start"
                time.sleep(1)
        with page(tmp_path / "profile") as (p, _):
            p.goto(runs_view_url(exp.experiment_id, base))
            for name in ("trial 0 · complete", "trial 1 · pruned: oom", "trial 3 · complete"):
                p.get_by_text(name).first.wait_for(timeout=90_000)
            assert "/runs" in p.url
            p.screenshot(path=str(tmp_path / "mlflow.png"))
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)
