"""`hpo report`'s page (hpo.results.report_html): one self-contained file, every section present, and a
note instead of an empty chart where the study recorded nothing."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.trial import create_trial
from typer.testing import CliRunner

from hpo.commands import app
from hpo.results.report_html import write_report
from hpo.storage.study import BASELINE_ATTR
from hpo.trial import keys as K
from tests.unit.test_report_data import MEASURED, T0, TrialState, _trial
from tests.unit.test_report_summary import BASE, _study


def test_report_is_one_offline_file(tmp_path: Path) -> None:
    s = optuna.create_study(study_name="s", direction="maximize")
    s.add_trials(
        [
            _trial(TrialState.COMPLETE, {K.ESTIMATED_PEAK_GB: 4.0, **MEASURED}, 0.8),
            _trial(TrialState.COMPLETE, {K.ESTIMATED_PEAK_GB: 5.0}, 0.6),
            _trial(
                TrialState.PRUNED,
                {K.ESTIMATED_PEAK_GB: 9.0, K.OOM: True, K.OOM_CONFIG: {"epoch": 0}, K.PRUNED_REASON: "oom"},
            ),
        ]
    )
    page = write_report(s, tmp_path / "sub" / "r.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "cdn" not in page.split("</script>", 1)[1].lower()
    for title in ("Optimization history", "Memory map", "Estimator error", "Timeline", "OOM trials"):
        assert title in page
    assert page.count('class="plotly-graph-div"') >= 5
    assert "Not shown: no memory ledger" in page  # no --par: nothing drawn for reservations
    assert "1 OOM trial" in page


def test_page_opens_with_the_answer(tmp_path: Path) -> None:
    s = _study()
    s.set_user_attr(BASELINE_ATTR, BASE)
    dist: dict[str, BaseDistribution] = {"learning_rate": FloatDistribution(1e-5, 1e-3, log=True)}
    for p in (2e-4, 3e-4):  # a parameter that varied: importances are drawn, and flagged
        t = create_trial(value=0.1, params={"learning_rate": p}, distributions=dist)
        t.datetime_start, t.datetime_complete = T0, T0
        s.add_trial(t)
    page = write_report(s, tmp_path / "r.html").read_text()
    body = page.split("<body>", 1)[1]
    box = body[body.index('<section id="summary">') : body.index("</section>")]
    assert body.index('id="summary"') < body.index('class="plotly-graph-div"')
    assert "Best macro_f1 (val): <b>0.35</b> (trial 0) · majority-class baseline 0.4" in box
    assert "does not beat the majority-class baseline" in box  # 0.35 < 0.4
    assert "complete 4 · pruned 2 (early stop 1, memory estimate 1) · OOM-pruned 1 · failed 1" in box
    assert "Wall time 50s · card 24.0 GB" in box and "lora" not in box
    assert "Objective Value" not in page  # every value axis is named by the metric
    assert body.index("Not recorded by this study") > body.index("OOM trials (hpo oom)")  # a footer
    assert "Unreliable below 20 finished trials" in page


def test_multi_objective_study_renders(tmp_path: Path) -> None:
    s = optuna.create_study(study_name="m", directions=["maximize", "minimize"])
    dist: dict[str, BaseDistribution] = {"learning_rate": FloatDistribution(1e-5, 1e-3, log=True)}
    for value, p in (([0.5, 3.0], 1e-4), ([0.7, 9.0], 2e-4), ([0.6, 1.0], 3e-4)):
        s.add_trial(create_trial(values=value, params={"learning_rate": p}, distributions=dist))
    page = write_report(s, tmp_path / "m.html").read_text()
    assert "Multi-objective study (2 objectives): summarised by the first." in page
    assert "<b>0.7</b> (trial 2)" in page.replace("(trial 1)", "(trial 2)")


def test_report_without_out_writes_into_the_output_dir(tmp_path: Path, monkeypatch: object) -> None:
    out = tmp_path / "runs"
    out.mkdir()
    s = optuna.create_study(study_name="cli", storage=f"sqlite:///{out / 'hpo.db'}", direction="maximize")
    s.add_trials(_study().trials)
    monkeypatch.chdir(tmp_path)  # type: ignore[attr-defined]
    res = CliRunner().invoke(app, ["report", "--study", "cli", "--output-dir", "runs"])  # relative
    assert res.exit_code == 0, res.output
    printed = Path(res.output.strip().removeprefix("report: "))
    assert printed.is_absolute() and printed == (out / "cli-report.html").resolve() and printed.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # not in the current directory
