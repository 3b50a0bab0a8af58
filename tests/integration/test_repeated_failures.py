"""Trials failing the same way stop `hpo tune` (serial and --par) with exit 2; a corrupt cache is rebuilt
(serial and --par)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo.run.serial import MAX_CONSECUTIVE_FAILURES
from tests.support import CI_CONFIG, hpo_cmd, quiet_env, run_cli


def tune_cmd(out: Path, *extra: str, config: Path = CI_CONFIG) -> list[str]:
    return hpo_cmd(
        "tune", "--config", str(config), "--output-dir", str(out), "--no-mlflow", "--epochs", "1", *extra
    )


def load(out: Path) -> optuna.Study:
    return optuna.load_study(study_name="ci-tiny", storage=f"sqlite:///{(out / 'hpo.db').resolve()}")


@pytest.mark.parametrize("par", [1, 2], ids=["serial", "par2"])
def test_every_trial_failing_the_same_way_stops_the_run(tmp_path: Path, par: int) -> None:
    out = tmp_path / "runs"
    env = {**quiet_env(), "HPO_INJECT_ERROR": "epoch=0,step=0"}
    res = subprocess.run(
        tune_cmd(out, "--n-trials", "20", *(["--par", str(par)] if par > 1 else [])),
        capture_output=True,
        text=True,
        env=env,
        timeout=400,  # before the breaker, --par 2 never stopped
    )
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert res.returncode == 2 and len(errors) == 1, res.stdout[-3000:] + res.stderr[-3000:]
    assert "trials failed with the same error" in errors[0] and "RuntimeError: injected error" in errors[0]
    assert "rerun" in errors[0]
    trials = load(out).trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert MAX_CONSECUTIVE_FAILURES <= len(failed) <= 2 * MAX_CONSECUTIVE_FAILURES, len(failed)
    assert all(t.user_attrs.get("error") for t in failed)
    assert not [t for t in trials if t.state == TrialState.RUNNING]


@pytest.mark.parametrize("par", [1, 2], ids=["serial", "par2"])
def test_a_corrupt_cache_is_rebuilt_and_the_study_finishes(tmp_path: Path, par: int) -> None:
    out, config = tmp_path / "runs", tmp_path / "one-length.yaml"
    # one max_length: every trial of the rerun reads the entries the first run built (the cache key has it)
    config.write_text(CI_CONFIG.read_text().replace("max_length: [48, 64]", "max_length: [64]"))
    assert "max_length: [64]" in config.read_text()
    first = run_cli(tune_cmd(out, "--n-trials", "1", config=config), timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    entries = [p for p in (out / "cache" / "tokenized").iterdir() if p.is_dir()]
    assert entries
    for entry in entries:  # a truncated Arrow file in one entry, a state.json that is not JSON in the others
        arrows = sorted(entry.glob("*.arrow"))
        if entry == entries[0]:
            os.truncate(arrows[0], arrows[0].stat().st_size // 2)
        else:
            (entry / "state.json").write_text("{not json")
    res = subprocess.run(
        tune_cmd(out, "--n-trials", "3", *(["--par", str(par)] if par > 1 else []), config=config),
        capture_output=True,
        text=True,
        env=quiet_env(),
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rebuilt = [line for line in res.stdout.splitlines() + res.stderr.splitlines() if "rebuilding" in line]
    assert 1 <= len(rebuilt) <= len(entries), rebuilt  # once per entry, whichever process reads it first
    assert "Traceback" not in res.stderr
    trials = load(out).trials
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) >= 3
    assert not [t for t in trials if t.state in (TrialState.FAIL, TrialState.RUNNING)]
