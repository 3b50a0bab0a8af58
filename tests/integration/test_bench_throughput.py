"""scripts/bench_throughput.py runs all three trainings end to end and reports consistent ratios."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_json_reports_three_runs_and_their_ratios() -> None:
    cmd = [sys.executable, str(ROOT / "scripts/bench_throughput.py"), "--quick", "--json"]
    cmd += ["--model", "hpo-tiny-bert", "--max-length", "64", "--threads", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(result) == {
        "hpo",
        "hf_trainer",
        "hpo_fixed_padding",
        "ratio_vs_trainer",
        "ratio_vs_fixed_padding",
    }
    assert all(result[k] > 0 for k in ("hpo", "hf_trainer", "hpo_fixed_padding"))
    # the ratios are of the rounded-before examples/s: equal to the printed ones within rounding
    assert (
        abs(result["ratio_vs_trainer"] - result["hpo"] / result["hf_trainer"])
        < 0.01 * result["ratio_vs_trainer"]
    )
    assert (
        abs(result["ratio_vs_fixed_padding"] - result["hpo"] / result["hpo_fixed_padding"])
        < 0.01 * (result["ratio_vs_fixed_padding"])
    )
