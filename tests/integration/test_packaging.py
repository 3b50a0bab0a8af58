"""A plain (non-editable) `pip install .` carries what hpo needs: configs, sample data, the tiny model."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support import REPO, quiet_env

SKIP = shutil.ignore_patterns(
    ".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
)


def test_plain_install_runs_the_shipped_demo_config(tmp_path: Path) -> None:
    source, target = tmp_path / "src", tmp_path / "site"
    shutil.copytree(REPO, source, symlinks=True, ignore=SKIP)  # the build writes into its source: a copy
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    res = subprocess.run([*install, "--target", str(target), str(source)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    shipped = target / "hpo" / "configs" / "studies" / "demo.yaml"
    assert shipped.is_file() and (target / "hpo" / "data" / "sample" / "redsm5_posts.csv").is_file()
    assert (target / "hpo" / "assets" / "tiny-bert" / "vocab.txt").is_file()
    assert (target / "hpo" / "data" / "classify" / "tickets.csv").is_file()  # the classify agent's sample
    assert (target / "hpo" / "data" / "classify" / "tickets_multilabel.jsonl").is_file()

    env = quiet_env() | {"PYTHONPATH": str(target)}
    where = subprocess.run(
        [sys.executable, "-c", "import hpo; print(hpo.__file__)"], cwd=tmp_path, env=env, capture_output=True
    )
    assert Path(where.stdout.decode().strip()).is_relative_to(target)  # the installed copy, not the checkout
    cmd = [sys.executable, "-m", "hpo", "tune", "--config", str(shipped), "--n-trials", "1", "--epochs", "1"]
    res = subprocess.run(
        [*cmd, "--output-dir", str(tmp_path / "out"), "--no-mlflow"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    study = yaml.safe_load(shipped.read_text())["study"]
    assert f"study {study}: 1 finished (1 new)" in res.stdout


def test_repository_links_show_the_shipped_files() -> None:
    """The checkout's configs/ and data/ are the package's (links), so there is one copy to edit."""
    assert (REPO / "configs").resolve() == (REPO / "hpo" / "configs").resolve()
    assert (REPO / "data" / "sample").resolve() == (REPO / "hpo" / "data" / "sample").resolve()
