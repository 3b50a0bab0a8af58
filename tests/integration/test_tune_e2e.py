"""End to end on CPU: `hpo tune` with the tiny model, real SQLite storage and real MLflow, read back."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from hpo.commands import app
from hpo.trial import keys as K
from tests.support import CI_CONFIG

runner = CliRunner()


@pytest.fixture(scope="module")
def study_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("e2e") / "runs"
    config = CI_CONFIG
    result = runner.invoke(
        app, ["tune", "--config", str(config), "--output-dir", str(out), "--n-trials", "3"]
    )
    assert result.exit_code == 0, result.output
    return {"out": out, "output": result.output, "storage": f"sqlite:///{(out / 'hpo.db').resolve()}"}


def test_tune_prints_summary(study_run: dict[str, object]) -> None:
    output = str(study_run["output"])
    assert "3 finished (3 new)" in output
    assert "majority-class baseline" in output
    assert "mlflow ui --backend-store-uri sqlite:///" in output
    assert "runs?workflowType=machine_learning" in output
    report = Path(str(study_run["out"])) / "ci-tiny-report.html"
    assert f"report: {report.resolve()}" in output.splitlines()[-1] and report.stat().st_size > 100_000


def test_storage_holds_three_finished_trials(study_run: dict[str, object]) -> None:
    study = optuna.load_study(study_name="ci-tiny", storage=str(study_run["storage"]))
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) == 3
    for t in finished:
        assert "trial_config" in t.user_attrs and "mlflow_run_id" in t.user_attrs
        assert t.user_attrs["estimated_peak_gb"] > 0
    complete = [t for t in finished if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete, "at least one trial should complete"
    assert all(0.0 <= t.value <= 1.0 for t in complete)
    assert all(t.intermediate_values for t in complete)


def test_trials_and_best_read_back(study_run: dict[str, object]) -> None:
    storage = str(study_run["storage"])
    res = runner.invoke(app, ["trials", "--study", "ci-tiny", "--storage", storage])
    assert res.exit_code == 0, res.output
    assert len([ln for ln in res.output.splitlines() if ln.strip()]) == 4  # header + 3 rows
    res = runner.invoke(app, ["trials", "--study", "ci-tiny", "--storage", storage, "--json"])
    rows = json.loads(res.output)
    assert {r["number"] for r in rows} == {0, 1, 2}
    res = runner.invoke(app, ["best", "--study", "ci-tiny", "--storage", storage, "--json"])
    assert res.exit_code == 0, res.output
    best = json.loads(res.output)
    assert best["config"]["model"] == "hpo-tiny-bert"


def test_best_evaluate_scores_test_split(study_run: dict[str, object]) -> None:
    res = runner.invoke(
        app, ["best", "--study", "ci-tiny", "--output-dir", str(study_run["out"]), "--evaluate", "--json"]
    )
    assert res.exit_code == 0, res.output
    best = json.loads(res.output)
    test = best["test"]
    assert 0.0 <= test["test_macro_f1"] <= 1.0 and test["test_examples"] > 0
    # the re-run is the trial's training: its schedule (2 epochs), stopped at its best epoch, so the same
    # weights give the same validation score the trial reported
    study = optuna.load_study(study_name="ci-tiny", storage=str(study_run["storage"]))
    trial = study.trials[best["number"]]
    assert test["epochs_scheduled"] == trial.user_attrs["epochs_scheduled"] == 2
    assert test["epochs"] == trial.user_attrs["best_epoch"] + 1
    assert test["val_macro_f1"] == pytest.approx(trial.value, abs=1e-9)


def test_mlflow_has_parent_and_child_runs(study_run: dict[str, object]) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{(Path(str(study_run['out'])) / 'mlflow.db').resolve()}")
    exp = client.get_experiment_by_name("ci-tiny")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("hpo.parent") == "true"]
    children = [r for r in runs if r.data.tags.get("hpo.parent_run_id")]
    assert exp.tags.get("mlflow.experimentKind") == "custom_model_development"  # opens on training runs
    assert len(parents) == 1 and len(children) == 3
    assert parents[0].info.status == "FINISHED" and "best_val_macro_f1" in parents[0].data.metrics
    assert all(c.data.tags["hpo.parent_run_id"] == parents[0].info.run_id for c in children)
    assert not any(c.data.tags.get("mlflow.parentRunId") for c in children)  # not folded under the study
    for c in children:  # the list reads on its own: "trial 2 · pruned: early_stop"
        state, reason = c.data.tags["state"], c.data.tags.get("pruned_reason")
        assert c.info.run_name == K.run_name(int(c.data.tags["trial_number"]), state, reason)
    assert {c.data.tags["trial_number"] for c in children} == {"0", "1", "2"}
    for c in children:
        assert c.info.status in ("FINISHED", "KILLED")
        assert "learning_rate" in c.data.params and "batch_size" in c.data.params
        if c.info.status == "FINISHED":
            assert "best_val_macro_f1" in c.data.metrics
            history = client.get_metric_history(c.info.run_id, "val_macro_f1")
            assert len(history) >= 1


def test_resume_keeps_finished_trials_and_adds_new(study_run: dict[str, object]) -> None:
    storage = str(study_run["storage"])
    before = {
        t.number: (t.state, t.value) for t in optuna.load_study(study_name="ci-tiny", storage=storage).trials
    }
    res = runner.invoke(
        app,
        [
            "tune",
            "--config",
            str(CI_CONFIG),
            "--output-dir",
            str(study_run["out"]),
            "--n-trials",
            "4",
            "--no-mlflow",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "4 finished (1 new)" in res.output
    after = optuna.load_study(study_name="ci-tiny", storage=storage).trials
    assert {t.number: (t.state, t.value) for t in after if t.number in before} == before
    assert len([t for t in after if t.state.is_finished()]) == 4
