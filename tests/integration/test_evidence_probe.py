"""scripts/evidence_probe.py end to end: the config-built tiny BERT, 2 epochs on the shipped sample."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hpo.agents import get_agent
from hpo.paths import SAMPLE_DATA_DIR

REPO = Path(__file__).resolve().parents[2]


def test_probe_reports_the_baseline_and_the_margin_ranking() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, str(REPO / "scripts" / "evidence_probe.py"), "--model", "hpo-tiny-bert"]
    cmd += ["--epochs", "2", "--max-length", "96", "--lr", "1e-3", "--threads", "1", "--batch-size", "16"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    splits = get_agent("evidence").load_splits(SAMPLE_DATA_DIR, 42)
    assert got["train_pairs"] == len(splits.train) and got["val_pairs"] == len(splits.val)
    assert got["val_answerable"] == sum(bool(ex.label) for ex in splits.val)
    assert got["no_answer_baseline"] == round(get_agent("evidence").majority_baseline(splits), 4)
    assert len(got["val_span_f1_by_epoch"]) == 2
    assert "epoch 1/2: train loss" in out.stderr and "epoch 2/2: train loss" in out.stderr
    assert got["beats_baseline"] == (max(got["val_span_f1_by_epoch"]) > got["no_answer_baseline"])
    # the final model read again gives the last epoch's score (one pair of slack: padding widths differ)
    assert abs(got["val_span_f1_final"] - got["val_span_f1_by_epoch"][-1]) <= 1 / got["val_pairs"]
    # the threshold chosen on validation itself is at least as good as threshold 0 and the training one
    best = got["val_f1_at_val_threshold_optimistic"]
    assert best >= got["val_span_f1_final"] and best >= got["val_f1_at_train_threshold"]
    assert best >= got["no_answer_baseline"]  # an infinite threshold is the baseline
    assert 0.0 <= got["val_margin_auc"] <= 1.0
    assert 0.0 <= got["val_answerable_f1_always_answering"] <= 1.0
