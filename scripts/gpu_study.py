"""A whole GPU study on one card: hpo's memory-aware --par vs fixed PAR, OOMs, estimate vs measured peaks.

    python scripts/gpu_study.py [--simulate] [--out runs/gpu-study] [--window 75] [--fixed-par 2,4]
                                [--no-mlflow]

On a CUDA card (about 8 minutes): a ballast leaves 24 GiB free, and the mix of configs/bench/gpu-study.yaml
runs under each schedule (hpo/bench/gpu_study.py). Without CUDA, or with --simulate, the same runs go on a
simulated card with tiny models (under a minute) and the JSON says "measured": false. Prints one JSON line;
per-trial rows go to <out>/<schedule>.csv and <out>/trials.csv.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from hpo.bench.gpu_study import Plan, mlflow_available, run_all
from hpo.bench.study_summary import summarize


def cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--simulate", action="store_true", help="simulated card and tiny models (automatic without CUDA)")
    add("--out", type=Path, default=Path("runs/gpu-study"))
    add("--window", type=float, default=None, help="seconds of wall time per schedule (default: the plan's)")
    add("--fixed-par", default=None, help="fixed-PAR baselines, e.g. 2,4 (default: the plan's)")
    add("--no-mlflow", action="store_true", help="do not log to MLflow (default: log when it is installed)")
    args = parser.parse_args(argv)
    simulated = args.simulate or not cuda_available()
    plan = Plan.load(simulated)
    if args.window is not None:
        plan = replace(plan, window_s=args.window)
    if args.fixed_par:
        plan = replace(plan, fixed_par=[int(k) for k in args.fixed_par.split(",")])
    mlflow = mlflow_available() and not args.no_mlflow
    started = time.monotonic()
    results, ballast = run_all(plan, args.out, mlflow)
    summary = summarize(results, args.out, simulated, ballast)
    summary["wall_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
