"""Test session setup: offline mode, single-threaded torch, the integration marker, and a guard that no test
writes into the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.pop("OPTUNA_STORAGE", None)
os.environ.pop("HPO_MLFLOW_URI", None)
os.environ.pop("HPO_INJECT_OOM", None)
os.environ.pop("HPO_INJECT_FATAL", None)
os.environ.pop("HPO_INJECT_KILL", None)

import torch

torch.set_num_threads(1)

from tests.support import REPO  # noqa: E402

# Folders a test run may create in the checkout (caches); anything else a test writes belongs in tmp_path.
_ALLOWED = ("__pycache__", ".pytest_cache", ".hypothesis", ".mypy_cache", ".ruff_cache")


def _untracked() -> set[str]:
    """Untracked and ignored paths of the checkout, as git lists them (empty outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    paths = {line[3:] for line in out.splitlines() if line[:2] in ("??", "!!")}
    return {
        p for p in paths if not any(part in _ALLOWED for part in Path(p).parts) and not p.startswith(".venv")
    }


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_BEFORE] = _untracked()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when tests wrote into the checkout (they must write under tmp_path)."""
    new = sorted(_untracked() - session.config.stash.get(_BEFORE, set()))
    if new:
        print(f"\nerror: tests wrote into the checkout: {', '.join(new[:10])}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_BEFORE = pytest.StashKey[set[str]]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests under tests/integration carry the ``integration`` marker (real training, processes, MLflow)."""
    for item in items:
        if "integration" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.integration)
