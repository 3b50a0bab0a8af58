"""One-time setup: the starter creates storage, MLflow and the parent run before any worker starts;
concurrent starters take turns."""

from __future__ import annotations

import subprocess
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from tests.support import CI_CONFIG, hpo_cmd, quiet_env, run_cli

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def tune_cmd(out: Path, *extra: str) -> list[str]:
    return hpo_cmd("tune", "--config", str(CI_CONFIG), "--output-dir", str(out), "--epochs", "1", *extra)


def finished(out: Path) -> int:
    study = optuna.load_study(study_name="ci-tiny", storage=f"sqlite:///{(out / 'hpo.db').resolve()}")
    return len([t for t in study.trials if t.state in FINISHED])


def parent_runs(out: Path) -> int:
    client = MlflowClient(f"sqlite:///{(out / 'mlflow.db').resolve()}")
    exp = client.get_experiment_by_name("ci-tiny")
    assert exp is not None
    return len(client.search_runs([exp.experiment_id], filter_string="tags.`hpo.parent` = 'true'"))


@pytest.mark.slow
def test_five_back_to_back_parallel_starts_on_new_dirs(tmp_path: Path) -> None:
    for i in range(5):
        out = tmp_path / f"runs{i}"
        res = run_cli(tune_cmd(out, "--par", "2", "--n-trials", "2"), timeout=600)
        text = res.stdout + res.stderr
        assert res.returncode == 0, text[-3000:]
        assert "died with exit code" not in text and "_alembic_tmp" not in text and "Traceback" not in text
        assert finished(out) >= 2
        assert parent_runs(out) == 1


@pytest.mark.slow
def test_two_concurrent_tunes_on_a_new_dir(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    procs = [
        subprocess.Popen(
            tune_cmd(out, "--n-trials", "3"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=quiet_env(),
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for proc, text in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, text[-3000:]
        assert "Traceback" not in text and "error:" not in text
    total = finished(out)
    assert 3 <= total <= 4  # the target, barring two trials that end in the very same instant
    assert parent_runs(out) == 1
    # each run reports the trials it finished itself: together, every finished trial
    new = [
        int(line.split("(")[1].split(" new")[0])
        for text in outputs
        for line in text.splitlines()
        if line.startswith("study ci-tiny:")
    ]
    assert sum(new) == total, outputs
