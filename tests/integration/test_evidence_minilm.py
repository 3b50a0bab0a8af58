"""MiniLM beats the no-answer baseline on the evidence task: a 600-post synthetic sample (the shipped 150
posts first), 6 epochs on CPU (~31-34 min on 2 cores; measured 0.771 against 0.710 in README "Measured").

Marked ``learning``: too long for CI (`.ci/run`), deselected by default (pyproject addopts), run by
`make test-learning`. CI's learning guard is tests/integration/test_criteria_learns.py (~30 s)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.learning
@pytest.mark.timeout(3600)  # the suite default (600 s) is far below ~31 min of training
def test_minilm_beats_the_no_answer_baseline_on_a_600_post_sample(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    data = tmp_path / "s600"
    gen = [sys.executable, str(REPO / "scripts" / "make_sample_data.py"), "--out", str(data), "--no-vocab"]
    subprocess.run([*gen, "--n-posts", "600"], env=env, check=True, timeout=120)
    probe = [sys.executable, str(REPO / "scripts" / "evidence_probe.py"), "--data-dir", str(data)]
    probe += ["--epochs", "6", "--lr", "1e-4", "--batch-size", "16", "--threads", "2"]
    out = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=3300)
    assert out.returncode == 0, out.stderr[-4000:]  # the probe's traceback and per-epoch lines
    got = json.loads(out.stdout.strip().splitlines()[-1])
    with capsys.disabled():  # the measured numbers belong in the CI log, pass or fail
        keys = ("val_span_f1_by_epoch", "no_answer_baseline", "val_margin_auc", "train_seconds")
        print("\nevidence probe:", json.dumps({k: got[k] for k in keys}))
    assert got["train_answerable"] > 300 and got["val_answerable"] > 50
    assert got["beats_baseline"], got
    assert got["val_span_f1_final"] > got["no_answer_baseline"], got
    assert got["val_margin_auc"] > 0.6, got
