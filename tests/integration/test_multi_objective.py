"""`hpo tune --objectives macro_f1,peak_memory --par 2` on the tiny config: the study runs to its count with
an OOM trial pruned, `hpo best` prints a non-dominated front (checked against the trial values in the
storage), `--json` has its shape, `--pick` refuses a trial off the front, a resume with other objectives is
refused, and the report draws the Pareto scatter in Chromium."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.browser import chromium_path, page
from tests.support import CI_CONFIG, hpo_cmd, run_cli

OBJECTIVES = "macro_f1,peak_memory"


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mo") / "runs"
    cfg = out.parent / "study.yaml"  # a resume passes it again
    cfg.write_text(
        CI_CONFIG.read_text()
        + "max_train_examples: 32\nfaults:\n  oom_epoch: 0\n  oom_step: 0\n  trials: [1]\n"
    )
    args = ["--config", str(cfg), "--output-dir", str(out), "--no-mlflow", "--n-trials", "3", "--epochs", "1"]
    res = run_cli(hpo_cmd("tune", *args, "--par", "2", "--gpu-memory", "24GB", "--objectives", OBJECTIVES))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "Pareto front: trial(s) " in res.stdout
    return out


def load(out: Path) -> optuna.Study:
    return optuna.load_study(study_name="ci-tiny", storage=f"sqlite:///{(out / 'hpo.db').resolve()}")


def best(out: Path, *extra: str) -> tuple[int, str]:
    res = run_cli(hpo_cmd("best", "--study", "ci-tiny", "--output-dir", str(out), *extra), timeout=120)
    return res.returncode, res.stdout + res.stderr


def test_runs_to_its_count_with_every_objective_recorded(study_dir: Path) -> None:
    study = load(study_dir)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3
    assert [t.user_attrs.get("pruned_reason") for t in finished if t.state == TrialState.PRUNED] == ["oom"]
    for t in (t for t in finished if t.state == TrialState.COMPLETE):
        assert len(t.values) == 2 and 0.0 <= t.values[0] <= 1.0 and t.values[1] > 0.0
        assert t.user_attrs["objective_macro_f1"] == t.values[0]
        assert t.user_attrs["objective_peak_memory"] == t.values[1]  # no measured peak on CPU: the estimate
        assert t.values[1] == pytest.approx(t.user_attrs["estimated_peak_gb"], abs=1e-3)


def test_best_prints_a_non_dominated_front(study_dir: Path) -> None:
    code, text = best(study_dir)
    assert code == 0, text
    assert "Pareto front" in text and "macro_f1 (max)" in text and "peak_memory (GB, min)" in text
    done = [t for t in load(study_dir).trials if t.state == TrialState.COMPLETE]
    shown = {int(line.split()[0]) for line in text.splitlines()[2:] if line.split()[0].isdigit()}
    assert shown
    for t in done:  # on the front iff no complete trial is at least as good everywhere and better somewhere
        beaten = any(
            o.values[0] >= t.values[0] and o.values[1] <= t.values[1] and o.values != t.values for o in done
        )
        assert (t.number in shown) == (not beaten), (t.number, [o.values for o in done])


def test_best_json_shape_and_pick(study_dir: Path) -> None:
    code, text = best(study_dir, "--json")
    assert code == 0, text
    out = json.loads(text)
    assert out["objectives"] == ["macro_f1", "peak_memory"] and out["test"] is None
    assert out["front"] and set(out["front"][0]) == {"number", "values", "params", "config", "mlflow_run_id"}
    assert set(out["front"][0]["values"]) == {"macro_f1", "peak_memory"}
    pick = out["front"][0]["number"]
    code, text = best(study_dir, "--evaluate", "--pick", str(pick), "--json")
    assert code == 0, text
    assert json.loads(text)["test"]["trial"] == pick and "test_macro_f1" in json.loads(text)["test"]
    code, text = best(study_dir, "--evaluate", "--pick", "1")  # trial 1 ran out of memory: not on the front
    assert code == 2 and text.startswith("error: trial 1 is not on the Pareto front"), text
    assert len(text.strip().splitlines()) == 1


def test_resume_with_other_objectives_is_refused(study_dir: Path) -> None:
    cfg = study_dir.parent / "study.yaml"
    args = ["--config", str(cfg), "--output-dir", str(study_dir), "--no-mlflow", "--n-trials", "4"]
    res = run_cli(hpo_cmd("tune", *args, "--gpu-memory", "24GB", "--objectives", "macro_f1,train_time"))
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert "objectives was ['macro_f1', 'peak_memory']" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and len(load(study_dir).trials) == 3


PARETO_JS = """() => {
  const d = document.querySelector('#fig-pareto .plotly-graph-div');
  return d && {traces: d.data.map(t => ({name: t.name, n: t.x.length})), xTitle: d.layout.xaxis.title.text,
    shapes: (d.layout.shapes || []).length, points: d.querySelectorAll('path.point').length};
}"""


def test_report_draws_the_pareto_scatter(study_dir: Path, tmp_path: Path) -> None:
    chromium_path()  # skips without a browser
    out = tmp_path / "report.html"
    res = run_cli(hpo_cmd("report", "--study", "ci-tiny", "--output-dir", str(study_dir), "--out", str(out)))
    assert res.returncode == 0, res.stderr
    with page(tmp_path / "profile") as (p, errors):
        p.goto(out.resolve().as_uri())
        p.wait_for_load_state("load")
        p.wait_for_timeout(500)
        fig = p.evaluate(PARETO_JS)
    assert errors == []
    assert fig is not None, "no Pareto figure on the page"
    complete = sum(t.state == TrialState.COMPLETE for t in load(study_dir).trials)
    assert "Pareto front" in [t["name"] for t in fig["traces"]]
    assert sum(t["n"] for t in fig["traces"]) == complete and fig["points"] >= complete
    assert fig["xTitle"] == "peak_memory (GB)" and fig["shapes"] == 1  # the 24 GB card's limit
