"""The evidence agent end to end on CPU: `hpo tune --agent evidence` with the tiny model (real SQLite and
MLflow, length grouping, the tokenization disk cache) and `hpo best --evaluate` on its test split."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from hpo.commands import app
from tests.support import REPO

runner = CliRunner()
CONFIG = REPO / "configs" / "studies" / "ci-evidence.yaml"


@pytest.fixture(scope="module")
def study_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("evidence") / "runs"
    args = ["tune", "--agent", "evidence", "--config", str(CONFIG), "--output-dir", str(out)]
    result = runner.invoke(app, [*args, "--n-trials", "2", "--no-report"])
    assert result.exit_code == 0, result.output
    return {"out": out, "output": result.output, "storage": f"sqlite:///{(out / 'hpo.db').resolve()}"}


def test_tune_runs_an_evidence_study(study_run: dict[str, object]) -> None:
    assert "2 finished (2 new)" in str(study_run["output"])
    assert "span_f1" in str(study_run["output"]) and "(no-answer baseline 0." in str(study_run["output"])
    study = optuna.load_study(study_name="ci-evidence", storage=str(study_run["storage"]))
    assert study.user_attrs["agent"] == "evidence"
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete and all(0.0 <= t.value <= 1.0 for t in complete)
    client = MlflowClient(tracking_uri=f"sqlite:///{(Path(str(study_run['out'])) / 'mlflow.db').resolve()}")
    exp = client.get_experiment_by_name("ci-evidence")
    assert exp is not None
    children = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("hpo.parent_run_id")]
    assert len(children) == 2
    assert any(client.get_metric_history(c.info.run_id, "val_span_f1") for c in children)
    assert list((Path(str(study_run["out"])) / "cache" / "tokenized").glob("*.windows.pt"))


def test_best_evaluate_scores_the_test_split(study_run: dict[str, object]) -> None:
    args = ["best", "--study", "ci-evidence", "--output-dir", str(study_run["out"]), "--evaluate", "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    best = json.loads(res.output)
    test = best["test"]
    for key in ("test_span_f1", "test_exact_match", "test_no_answer_accuracy", "test_has_answer_f1"):
        assert 0.0 <= test[key] <= 1.0
    assert test["test_examples"] > 0 and 0.0 < test["test_majority_baseline_span_f1"] < 1.0
    study = optuna.load_study(study_name="ci-evidence", storage=str(study_run["storage"]))
    # the re-run is the trial's own training (same seed, schedule, stop): the same validation score
    assert test["val_span_f1"] == pytest.approx(study.trials[best["number"]].value, abs=1e-9)
