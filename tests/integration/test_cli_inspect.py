"""`hpo trials` and `hpo oom` on a real study with OOM trials, and a real `hpo` subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hpo.commands import app
from tests.support import REPO

runner = CliRunner()


@pytest.fixture(scope="module")
def oom_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("oom") / "runs"
    cfg = tmp_path_factory.mktemp("cfg") / "study.yaml"
    cfg.write_text(
        (REPO / "configs" / "studies" / "ci-tiny.yaml").read_text()
        + "max_train_examples: 32\nfaults:\n  oom_epoch: 0\n  oom_step: 0\n  trials: [1, 2]\n"
    )
    res = runner.invoke(
        app, ["tune", "--config", str(cfg), "--output-dir", str(out), "--n-trials", "4", "--epochs", "1"]
    )
    assert res.exit_code == 0, res.output
    assert "OOM 2" in res.output
    return out


def test_oom_table_from_optuna_and_mlflow(oom_study: Path) -> None:
    res = runner.invoke(app, ["oom", "--study", "ci-tiny", "--output-dir", str(oom_study)])
    assert res.exit_code == 0, res.output
    assert "2 OOM trials" in res.output and "hpo-tiny-bert" in res.output
    for source in ("optuna", "mlflow"):
        res = runner.invoke(
            app, ["oom", "--study", "ci-tiny", "--output-dir", str(oom_study), "--source", source, "--json"]
        )
        assert res.exit_code == 0, res.output
        data = json.loads(res.output)
        assert sorted(r["number"] for r in data["rows"]) == [1, 2]
        assert data["summary"]["count"] == 2
        assert all(r["epoch"] == 0 and r["step"] == 0 for r in data["rows"])


def test_trials_filter_by_state_and_reason(oom_study: Path) -> None:
    res = runner.invoke(
        app,
        [
            "trials",
            "--study",
            "ci-tiny",
            "--output-dir",
            str(oom_study),
            "--state",
            "pruned",
            "--reason",
            "oom",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["number"] for r in rows] == [1, 2] and {r["reason"] for r in rows} == {"oom"}
    res = runner.invoke(
        app, ["trials", "--study", "ci-tiny", "--output-dir", str(oom_study), "--state", "complete", "--json"]
    )
    assert {r["number"] for r in json.loads(res.output)} == {0, 3}


def test_real_subprocess_smoke() -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpo",
            "estimate",
            "--model",
            "hpo-tiny-bert",
            "--batch-size",
            "8",
            "--max-length",
            "64",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["method"] == "analytic"
    res = subprocess.run(
        [sys.executable, "-m", "hpo", "tune", "--agent", "nope"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 2 and res.stderr.strip().startswith("error: unknown agent")
    assert "Traceback" not in res.stderr
