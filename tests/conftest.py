"""Shared fixtures: offline mode, fast single-threaded torch, tiny model, temporary output dirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.pop("OPTUNA_STORAGE", None)
os.environ.pop("HPO_INJECT_OOM", None)
os.environ.pop("HPO_INJECT_FATAL", None)

import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
TINY = "hpo-tiny-bert"


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def ci_config(tmp_path: Path) -> Path:
    """The tiny-model study YAML, copied so a test may edit it."""
    path = tmp_path / "study.yaml"
    path.write_text((REPO / "configs" / "studies" / "ci-tiny.yaml").read_text())
    return path
