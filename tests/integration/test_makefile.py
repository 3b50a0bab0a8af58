"""The Makefile: study targets pass N_TRIALS / OUTPUT_DIR / MODELS / PAR to `hpo tune` and print the command
first (dry run: make -n, nothing built or run), and `make help` lists every target."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.support import REPO

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")

STUDY_TARGETS = ("demo", "tune-criteria-max", "tune-criteria-supermax")


def make(*args: str, dry: bool = True) -> str:
    # -n prints recipes without running them; -o skips the install stamp, so its recipe is not even printed
    flags = ["-n", "-o", ".venv/.install.stamp"] if dry else []
    res = subprocess.run(
        ["make", *flags, *args], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    return res.stdout


def hpo_command(out: str) -> str:
    """The one `hpo tune` line of a dry run (the printed copy is the `echo '...'` line before it)."""
    lines = [line for line in out.splitlines() if "hpo tune " in line and not line.startswith("echo ")]
    assert len(lines) == 1, out
    assert f"echo '{lines[0]}'" in out, "the target prints its resolved command first"
    return lines[0]


def test_supermax_honours_the_shared_variables() -> None:
    cmd = hpo_command(
        make(
            "tune-criteria-supermax",
            "N_TRIALS=2",
            "OUTPUT_DIR=/tmp/x",
            "PAR=3",
            "MODELS=roberta-base,bert-base",
        )
    )
    for part in ("--n-trials 2 ", "--output-dir /tmp/x", "--par 3 ", "--models roberta-base,bert-base"):
        assert part in cmd, cmd
    assert "5000" not in cmd


def test_supermax_defaults_and_old_name() -> None:
    cmd = hpo_command(make("tune-criteria-supermax"))
    assert "--study hpo-criteria-supermax --par 2 --n-trials 5000 --epochs 100 --patience 20" in cmd
    assert "--output-dir runs" in cmd and "--models" not in cmd
    assert "--n-trials 7 " in hpo_command(make("tune-criteria-supermax", "N_TRIALS_CRITERIA=7"))
    assert "--n-trials 3 " in hpo_command(make("tune-criteria-supermax", "N_TRIALS_CRITERIA=7", "N_TRIALS=3"))


def test_max_defaults_and_overrides() -> None:
    assert "--study hpo-criteria-max --par 4 --n-trials 800" in hpo_command(make("tune-criteria-max"))
    cmd = hpo_command(
        make(
            "tune-criteria-max",
            "PAR=3",
            "N_TRIALS=50",
            "PREFIX=mine",
            "MODELS=roberta-base",
            "GPU_MEMORY=24GB",
        )
    )
    assert "--study mine-criteria-max --par 3 --n-trials 50" in cmd
    assert "--models roberta-base" in cmd and "--gpu-memory 24GB" in cmd


def test_demo_defaults_to_its_config_and_honours_the_variables() -> None:
    cmd = hpo_command(make("demo"))
    assert cmd.endswith("hpo tune --config configs/studies/demo.yaml --output-dir runs/demo"), cmd
    cmd = hpo_command(make("demo", "N_TRIALS=2", "OUTPUT_DIR=/tmp/d", "PAR=2", "MODELS=hpo-tiny-bert"))
    for part in ("--n-trials 2", "--output-dir /tmp/d", "--par 2", "--models hpo-tiny-bert"):
        assert part in cmd, cmd


def makefile_targets() -> set[str]:
    """Every rule the Makefile defines by name (not target-specific variables, not the install stamp)."""
    targets = set()
    for line in (REPO / "Makefile").read_text().splitlines():
        m = re.match(r"([A-Za-z0-9][\w.-]*)\s*:(?!=)(.*)", line)
        if m and not re.match(r"\s*(export\s+)?[A-Z_]+\s*[:?+]?=", m.group(2)):
            targets.add(m.group(1))
    return targets


def test_help_lists_every_target_once() -> None:
    targets = makefile_targets()
    assert set(STUDY_TARGETS) | {"help", "test", "install", "clean"} <= targets
    out = make("help", dry=False)
    listed = [m.group(1) for m in re.finditer(r"^\s*make (\S+)\s+\S", out, re.M)]
    assert sorted(listed) == sorted(targets), out
    phony = re.search(r"^\.PHONY:(.*)$", (REPO / "Makefile").read_text(), re.M)
    assert phony and set(phony.group(1).split()) == targets
