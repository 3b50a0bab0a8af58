"""The Makefile study targets print their settings and pass them to `hpo tune` (dry run: make -n)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.support import REPO

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def dry_run(*args: str) -> str:
    # the install prerequisite is skipped with -o so nothing is built
    res = subprocess.run(
        ["make", "-n", "-o", ".venv/.install.stamp", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return res.stdout


def test_supermax_defaults() -> None:
    out = dry_run("tune-criteria-supermax")
    assert "PAR=2 N_TRIALS_CRITERIA=5000 EPOCHS=100 PATIENCE=20" in out
    assert "--study hpo-criteria-supermax --par 2" in out and "--n-trials 5000" in out


def test_max_defaults_and_overrides() -> None:
    assert "--study hpo-criteria-max --par 4" in dry_run("tune-criteria-max")
    out = dry_run(
        "tune-criteria-max", "PAR=3", "N_TRIALS=50", "PREFIX=mine", "MODELS=roberta-base", "GPU_MEMORY=24GB"
    )
    assert "--study mine-criteria-max --par 3 --n-trials 50" in out
    assert "--models roberta-base" in out and "--gpu-memory 24GB" in out
    assert "--par 3" in dry_run("tune-criteria-supermax", "PAR=3")
