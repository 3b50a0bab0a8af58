"""scripts/gpu_study.py --simulate end to end, and `hpo tune --admission none` (the fixed-PAR baseline)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo.bench.study_rows import COLUMNS
from tests.support import CI_CONFIG, REPO, hpo_cmd, quiet_env, run_cli

SCHEDULES = ("hpo", "hpo-shrink", "fixed-par-2", "cpu-fallback")


@pytest.mark.slow
def test_simulated_gpu_study_prints_every_field_and_writes_the_csvs(tmp_path: Path) -> None:
    out = tmp_path / "gpu-study"
    cmd = [sys.executable, str(REPO / "scripts" / "gpu_study.py"), "--simulate", "--out", str(out)]
    res = subprocess.run([*cmd, "--no-mlflow"], capture_output=True, text=True, timeout=400, env=quiet_env())
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    lines = [line for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, res.stdout[-2000:]
    s = json.loads(lines[0])
    assert s["measured"] is False and "nothing was measured" in s["note"] and s["ballast"] is None
    for name in SCHEDULES:
        tot = s["schedules"][name]
        assert {"completed", "ooms", "neighbour_deaths", "completed_per_hour", "wall_s"} <= set(tot), name
        rows = list(csv.DictReader((out / f"{name}.csv").open()))
        assert rows and list(rows[0]) == list(COLUMNS), name
    assert "hpo_vs_fixed-par-2" in s["ratio"] or s["schedules"]["fixed-par-2"]["completed"] == 0
    assert s["neighbour_deaths"]["hpo"] == 0 and isinstance(s["ooms_caught"], int)
    assert s["estimate_error_by_family"] == {} and s["worst_under_prediction"] is None  # nothing measured
    forced = s["forced_oom"]
    assert forced["ok"] and forced["injected"] and forced["pruned_reason"] == "oom"
    assert forced["oom_config"]["model"] == "hpo-tiny-bert" and forced["oom_config"]["batch_size"] == 16
    fallback = s["cpu_fallback"]
    assert fallback["ok"] and fallback["final_device"].startswith("cpu") and fallback["origin"] == "injected"
    pruned = s["schedules"]["hpo"]["pruned"]
    assert pruned.get("memory_estimate", 0) >= 1 or s["schedules"]["hpo"]["trials"] < 6  # MiniLM b64 x 512
    assert (out / "trials.csv").is_file()


@pytest.mark.slow
def test_admission_none_skips_the_ledger_and_the_estimate(tmp_path: Path) -> None:
    """A card with room for the two workers' contexts only: the ledger would prune every trial by estimate
    (test_launcher's one-at-a-time card, less the room for a trial); --admission none runs them all."""
    from hpo.memory.budget import CUDA_CONTEXT

    out, cfg = tmp_path / "runs", tmp_path / "no-room.yaml"
    card_mib = 2 * CUDA_CONTEXT // 2**20 + 100
    cfg.write_text(CI_CONFIG.read_text() + f"gpu_memory: {card_mib}MiB\nheadroom_gb: 0.0\n")
    tune = ["tune", "--config", str(cfg), "--output-dir", str(out), "--no-mlflow", "--no-report"]
    res = run_cli(hpo_cmd(*tune, "--epochs", "1", "--par", "2", "--n-trials", "2", "--admission", "none"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    study = optuna.load_study(study_name="ci-tiny", storage=f"sqlite:///{(out / 'hpo.db').resolve()}")
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 2, states  # nothing pruned by estimate, nothing waited
    assert not any("admitted_at" in t.user_attrs for t in study.trials)
    assert not (out / "hpo.ledger.json").exists()  # no GPU or host-RAM ledger at all
    assert "--admission" in run_cli(hpo_cmd("tune", "--help")).stdout
