"""`hpo tune --gpus 0,1` on CPU: two simulated cards (--gpu-memory each), PAR workers + a ledger per card."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
from optuna.trial import TrialState

from tests.support import CI_CONFIG, hpo_cmd, run_cli


def test_two_simulated_gpus_run_one_worker_each_with_a_ledger_per_card(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    cmd = hpo_cmd(
        "tune", "--config", str(CI_CONFIG), "--output-dir", str(out), "--no-mlflow", "--epochs", "1",
        "--par", "1", "--gpus", "0,1", "--gpu-memory", "8GB", "--n-trials", "4",
    )  # fmt: skip
    res = run_cli(cmd, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "2 workers" in res.stdout and "par 1 per GPU x GPUs 0,1" in res.stdout
    study = optuna.load_study(study_name="ci-tiny", storage=f"sqlite:///{(out / 'hpo.db').resolve()}")
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) >= 4
    assert TrialState.RUNNING not in states
    ledger = json.loads((out / "hpo.ledger.json").read_text())
    cards = sorted(k for k in ledger if k.startswith("simulated-"))
    assert len(cards) == 2 and cards[0].endswith("-gpu0") and cards[1].endswith("-gpu1"), ledger.keys()
    # every admitted trial records the card it ran on (its ledger key)
    placed = {t.user_attrs["gpu"] for t in study.trials if "admitted_at" in t.user_attrs}
    assert placed and placed <= set(cards), (placed, cards)
