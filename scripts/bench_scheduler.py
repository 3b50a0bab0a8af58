"""Scheduler benchmark: fixed PAR vs memory-aware admission on a simulated GPU (24 GB by default).

Discrete-event simulation of one seeded trial mix under each schedule; the core is ``hpo.bench``: the mix
(``hpo.bench.mix``: what `hpo tune` samples and how it is sized and timed) and the schedules, the ceiling
and the table (``hpo.bench.simulate``: fixed PAR, memory-aware with and without lighter forms). This script
parses the flags, runs every schedule on the same mix per seed and prints the table (and, with --repeat, a
summary of the ratios), optionally as JSON. The table's header says how many configs could not fit.

    python scripts/bench_scheduler.py [--config configs/studies/criteria-24gb.yaml] [--n-trials 400]
        [--seed 0] [--par 4] [--gpus 2] [--contention] [--out runs/bench.json]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hpo.bench import DEFAULT_CONFIG
from hpo.bench.error import error_model, true_context_bytes
from hpo.bench.mix import Mix, estimator_footprint, space_draw
from hpo.bench.simulate import NAMES, ceiling, run_all, simulate, table
from hpo.memory.budget import CUDA_CONTEXT
from hpo.units import GIB, parse_memory

TABLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "published_peaks.csv"


def main(argv: Sequence[str] | None = None) -> int:
    """Simulate the schedules, print the table, optionally write JSON."""
    parser = argparse.ArgumentParser(description="Scheduler benchmark on a simulated GPU (module doc).")
    add = parser.add_argument
    add("--config", type=Path, default=DEFAULT_CONFIG, help="study YAML whose space and models make the mix")
    add("--agent-defaults", action="store_true", help="the criteria agent's defaults instead of --config")
    add("--models", nargs="+", help="override the config's models")
    add("--precisions", nargs="+", help="override the space's precisions (fp32 fp16 bf16 bf16_pure)")
    add("--n-trials", type=int, default=400, help="trials in the mix")
    add("--seed", type=int, default=0, help="first seed (mix and sampler)")
    add("--repeat", type=int, default=1, help="run seeds seed..seed+repeat-1 and summarise the ratios")
    add("--par", type=int, default=4, help="workers; fixed PAR=par and par//2 are compared with memory-aware")
    add("--extra-par", type=int, nargs="*", default=[], help="more memory-aware rows with these PAR")
    add("--gpu-memory", default="24GB", help="card size; also picks the GPU profile's bounds")
    add("--headroom-gib", type=float, default=1.5, help="ledger capacity = card - headroom")
    add("--crash-kills", choices=["all", "newest"], default="newest", help="attempts an OOM crash kills")
    add("--error", default="loso", help="estimator error: loso | published | none | lognormal:SIGMA")
    add(
        "--published-table", type=Path, default=TABLE, help="published measured peaks (for --error published)"
    )
    add("--cap-margin-mib", type=float, help="per-worker cap margin (default: min(512, headroom / par))")
    add(
        "--true-context-mib",
        type=float,
        help="each worker's real CUDA context (default: the median measured on the H200, tests/data/gpu)",
    )
    add("--outside-cap-mib", type=float, default=0.0, help="more per worker that no cap limits")
    add("--lost", choices=["retry", "drop"], default="retry", help="whether a killed trial reruns")
    add("--max-attempts", type=int, default=5, help="attempts per trial with --lost retry")
    add(
        "--unfit",
        choices=["run", "skip"],
        default="run",
        help="whether fixed PAR runs configs that can't fit",
    )
    add("--contention", action="store_true", help="concurrent trials share GPU compute")
    add("--priority-after", type=float, default=60.0, help="ledger anti-starvation delay (s)")
    add("--elastic-after", type=float, default=60.0, help="wait before lighter forms are taken (s)")
    add(
        "--gpus",
        type=int,
        nargs="*",
        default=[],
        help="more memory-aware (elastic) rows on this many simulated cards, PAR workers each (--gpus 2)",
    )
    add("--out", type=Path, help="write config and results as JSON")
    args = parser.parse_args(argv)
    card = parse_memory(args.gpu_memory)
    capacity = card - int(args.headroom_gib * GIB)
    config = None if args.agent_defaults else args.config
    source = "criteria agent defaults" if config is None else str(config)
    pars = [args.par, *args.extra_par]
    kw = {"crash_kills": args.crash_kills, "lost": args.lost, "max_attempts": args.max_attempts}
    kw |= {"unfit": args.unfit, "contention": args.contention, "priority_after": args.priority_after}
    kw |= {"elastic_after": args.elastic_after, "outside_cap_bytes": int(args.outside_cap_mib * 2**20)}
    kw["true_context_bytes"] = true_context_bytes(args.true_context_mib)
    if args.cap_margin_mib is not None:
        kw["cap_margin_bytes"] = int(args.cap_margin_mib * 2**20)
    error, error_text = error_model(args.error, args.published_table)
    runs: list[dict[str, Any]] = []
    for seed in range(args.seed, args.seed + args.repeat):
        draw = space_draw(config, seed, args.gpu_memory, args.models, args.precisions)
        # the tool prunes what cannot fit beside the other workers' contexts; one mix for every row
        mix = Mix(seed, estimator_footprint, capacity - (max(pars) - 1) * CUDA_CONTEXT, draw, error)
        results = run_all(mix, args.n_trials, args.par, card, capacity, args.extra_par, **kw)
        results += [
            simulate(mix, args.n_trials, "memory", args.par, card, capacity, gpus=g, **kw) for g in args.gpus
        ]
        ceilings = {
            f"ceiling{' +elastic' if elastic else ''} PAR={p}": round(
                ceiling(mix, args.n_trials, p, capacity, elastic=elastic), 3
            )
            for p in pars
            for elastic in (False, True)
        }
        baseline = next(r for r in results if r.policy == "fixed" and r.par == max(1, args.par // 2))
        footprints = [t.footprint for t in mix.trials_upto(args.n_trials)]
        runs.append({"seed": seed, "pruned_by_estimate": mix.pruned, "ceilings": ceilings})
        runs[-1]["results"] = [
            asdict(r) | {"vs_base": r.trials_per_hour / baseline.trials_per_hour} for r in results
        ]
        if seed != args.seed:
            continue  # with --repeat, the first seed's table and the summary
        print(
            f"\n{args.n_trials} trials (seed {seed}) sampled from {source}, card {card / GIB:g} GiB, ledger "
            f"capacity {capacity / GIB:g} GiB, CUDA context {CUDA_CONTEXT / GIB:g} GiB per worker, "
            f"footprints hpo.memory.estimate (mean {sum(footprints) / len(footprints) / GIB:.1f} GiB, max "
            f"{max(footprints) / GIB:.1f}), {mix.pruned} configs that cannot fit (fixed PAR: {args.unfit}), "
            f"OOM kills {args.crash_kills}, lost {args.lost}, contention {'on' if args.contention else 'off'}"
            f"; true footprint = estimate x error: {error_text}; true CUDA context "
            f"{kw['true_context_bytes'] / 2**20:.0f} MiB + {args.outside_cap_mib:g} MiB outside the cap per "
            f"worker (the estimate and ledger count {CUDA_CONTEXT / 2**20:.0f} MiB)"
        )
        print(table(results, baseline, ceilings))
    if args.repeat > 1:
        seeds, base = f"{args.seed}..{args.seed + args.repeat - 1}", max(1, args.par // 2)
        print(f"\nseeds {seeds}, trials/h vs fixed PAR={base}: mean (min..max); means per seed of the rest")
        print(
            f"  {'schedule':<36}{'vs base':<20}{'done':>8}{'OOM crashes':>13}{'own OOM':>9}{'lost GPU-h':>12}"
        )
        for k, row in enumerate(runs[0]["results"]):
            ratios = [run["results"][k]["vs_base"] for run in runs]
            mean = lambda key, k=k: sum(run["results"][k][key] for run in runs) / len(runs)  # noqa: E731
            name = f"{NAMES[row['policy']]} PAR={row['par']}" + (
                f" x {row['gpus']}" if row["gpus"] > 1 else ""
            )
            vs = f"{sum(ratios) / len(ratios):.2f}x ({min(ratios):.2f}..{max(ratios):.2f})"
            print(
                f"  {name:<36}{vs:<20}{mean('completed'):>8.1f}{mean('crashes'):>13.1f}"
                f"{mean('own_ooms'):>9.1f}{mean('lost_gpu_hours'):>12.2f}"
            )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        payload = {"config": settings | {"mix": source}, "runs": runs}
        args.out.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
