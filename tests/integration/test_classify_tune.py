"""`hpo tune --agent classify` on the shipped synthetic tickets: CSV single-label (then `hpo best
--evaluate` on the test split), a save_to_disk folder, multi-label JSONL and `--par 2`; 2 trials of 1 epoch
on the tiny model each."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
from optuna.trial import TrialState
from typer.testing import CliRunner

from hpo.agents.classify import CLASSIFY_SAMPLE
from hpo.commands import app
from tests.support import REPO, hpo_cmd, run_cli

runner = CliRunner()
CONFIG = REPO / "hpo" / "configs" / "studies" / "classify-tiny.yaml"
MULTI = CLASSIFY_SAMPLE.with_name("tickets_multilabel.jsonl")


def tune(out: Path, *extra: str) -> str:
    args = ["tune", "--config", str(CONFIG), "--output-dir", str(out), "--no-mlflow", "--no-report", *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def finished(out: Path, study: str) -> list[optuna.trial.FrozenTrial]:
    s = optuna.load_study(study_name=study, storage=f"sqlite:///{(out / 'hpo.db').resolve()}")
    assert not [t for t in s.trials if t.state == TrialState.FAIL]
    return [t for t in s.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def test_csv_single_label_then_best_evaluates_the_test_split(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    output = tune(out)
    assert "2 finished (2 new)" in output and "val macro_f1" in output
    assert "majority-class baseline" in output
    trials = finished(out, "classify-tiny")
    study = optuna.load_study(study_name="classify-tiny", storage=f"sqlite:///{(out / 'hpo.db').resolve()}")
    assert list(study.user_attrs["fingerprint"]["data"]["files"]) == ["tickets.csv"]  # the file read
    assert len(trials) == 2 and all(0.0 <= (t.value or 0.0) <= 1.0 for t in trials)
    result = runner.invoke(
        app, ["best", "--study", "classify-tiny", "--output-dir", str(out), "--evaluate", "--json"]
    )
    assert result.exit_code == 0, result.output
    test = json.loads(result.output[result.output.index("{") :])["test"]
    assert test["test_examples"] == 45  # the 15 % of 100 customers' tickets the seeded split holds out
    assert 0.0 <= test["test_macro_f1"] <= 1.0 and 0.0 <= test["test_accuracy"] <= 1.0
    assert "test_majority_baseline_macro_f1" in test
    # the columns are fingerprinted: resuming with another grouping is refused
    args = [
        "tune",
        "--config",
        str(CONFIG),
        "--output-dir",
        str(out),
        "--no-mlflow",
        "--group-col",
        "ticket_id",
    ]
    again = runner.invoke(app, [*args, "--n-trials", "3"])
    assert again.exit_code == 2 and "columns was" in again.output, again.output


def test_save_to_disk_folder(tmp_path: Path) -> None:
    import datasets

    folder = tmp_path / "tickets-arrow"
    datasets.Dataset.from_csv(str(CLASSIFY_SAMPLE), cache_dir=str(tmp_path / "hf")).save_to_disk(str(folder))
    out = tmp_path / "runs"
    output = tune(out, "--data", str(folder), "--study", "arrow")
    assert "2 finished (2 new)" in output
    assert len(finished(out, "arrow")) == 2


def test_multi_label_jsonl(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    output = tune(out, "--data", str(MULTI), "--label-col", "tags", "--study", "multi")
    assert "2 finished (2 new)" in output and "per-label prior baseline" in output
    assert len(finished(out, "multi")) == 2
    result = runner.invoke(app, ["best", "--study", "multi", "--output-dir", str(out), "--evaluate"])
    assert result.exit_code == 0, result.output
    assert "test_micro_f1=" in result.output and "test_macro_f1=" in result.output


def test_two_workers(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    cmd = hpo_cmd("tune", "--config", str(CONFIG), "--output-dir", str(out), "--no-mlflow", "--no-report")
    res = run_cli([*cmd, "--par", "2", "--study", "par"], timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    trials = finished(out, "par")
    assert len(trials) >= 2 and "2 workers" in res.stdout
