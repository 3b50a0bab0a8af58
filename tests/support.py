"""What several test modules share: repository paths, the tiny study config, running `hpo` as a process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from hpo.config.study import TrialConfig

REPO = Path(__file__).resolve().parent.parent
CI_CONFIG = REPO / "configs" / "studies" / "ci-tiny.yaml"
TINY = "hpo-tiny-bert"
# The tiny model's reference trial: training tests change one field at a time from it.
BASE = TrialConfig(
    model="hpo-tiny-bert",
    learning_rate=1e-3,
    weight_decay=0.0,
    batch_size=16,
    grad_accum=1,
    max_length=64,
    warmup_ratio=0.0,
    scheduler="constant",
    dropout=0.1,
    max_grad_norm=0.0,
    loss="ce",
    class_weighting=False,
    grad_checkpointing=False,
    precision="fp32",
    frozen_layers=0,
)


def hpo_cmd(*args: str) -> list[str]:
    """`hpo ARGS` as this interpreter runs it (`python -m hpo`)."""
    return [sys.executable, "-m", "hpo", *args]


def quiet_env() -> dict[str, str]:
    """The test environment for a child `hpo` process, fault injection off."""
    env = dict(os.environ)
    env.pop("HPO_INJECT_OOM", None)
    env.pop("HPO_INJECT_FATAL", None)
    env.pop("HPO_INJECT_KILL", None)
    return env


def run_cli(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run an `hpo` command line to its end (output captured, fault injection off)."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=quiet_env())


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False
