"""Scheduler benchmark: fixed PAR vs memory-aware admission on a simulated 24 GB GPU.

Discrete-event simulation of one seeded trial mix (models, batch size, max length, precision, checkpointing
sampled from the criteria search space within the configs/gpus/24gb.yaml bounds; footprints = the memory
estimator's device total; durations from a compute cost model with noise) under each schedule:

- fixed PAR (the old tool): a free worker starts the next trial at once. When the running footprints exceed
  the card, CUDA runs out of memory: the attempts it kills (all running trials, or --crash-kills newest) are
  lost, their time wasted, and each killed worker restarts (STARTUP_S). By default a killed trial reruns
  later (--lost retry, at most --max-attempts), so every schedule owes the same trials; --lost drop never
  reruns it, which makes "trials/h" favour the small trials that survive.
- memory-aware: a taken trial waits until the ledger's own rule (hpo.ledger.admits + held_back) admits its
  footprint within the ledger capacity (card - headroom).

--contention makes concurrent trials share the GPU's compute (processor sharing by standalone utilisation);
without it a trial runs as fast beside others as alone. "work/h" (standalone trial-hours completed per hour)
is the size-neutral throughput: "trials/h" rewards a schedule that loses its large trials.

    python scripts/bench_scheduler.py [--n-trials 400] [--seed 0] [--contention] [--out runs/bench.json]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hpo.ledger import admits, held_back

GIB = 2**30
MODELS: tuple[str, ...] = ("bert-base-uncased", "roberta-base", "deberta-v3-base")
MODELS += ("bert-large-uncased", "roberta-large", "deberta-v3-large")
BATCH_SIZES, MAX_LENGTHS, PRECISIONS = (8, 16, 32, 64), (128, 256, 384, 512), ("fp32", "fp16", "bf16")
PEAK_FLOPS = {"fp32": 20e12, "fp16": 55e12, "bf16": 55e12}  # sustained at full utilisation, 24 GB class
TRAIN_EXAMPLES, STARTUP_S, SATURATION_TOKENS = 8000, 45.0, 4096
Footprint = Callable[[str, int, int, str, bool], int]
Bounds = Callable[[int], tuple[int, int]]  # parameter count -> (max batch size, max length)


@dataclass(frozen=True)
class TrialSpec:
    """One trial of the mix: its configuration, peak device footprint and standalone duration."""

    index: int
    model: str
    batch_size: int
    max_length: int
    precision: str
    grad_checkpointing: bool
    footprint: int
    duration_s: float
    util: float  # fraction of the GPU's compute the trial keeps busy when it runs alone


@dataclass(frozen=True)
class Result:
    """Outcome of one schedule over the whole mix."""

    policy: str
    par: int
    trials: int
    completed: int
    crashes: int
    lost: int
    wasted_gpu_hours: float
    makespan_hours: float
    trials_per_hour: float
    work_per_hour: float  # standalone trial-hours completed per wall hour (size-neutral throughput)
    mean_memory_util: float
    max_in_use_gib: float
    mean_wait_min: float
    max_wait_min: float


def estimator_footprint(model: str, batch: int, length: int, precision: str, ckpt: bool) -> int:
    """Device-level peak from hpo.memory.estimate (what the worker reserves in the ledger)."""
    from hpo.memory.catalog import get_spec
    from hpo.memory.estimate import MemoryRequest, estimate

    req = MemoryRequest(batch_size=batch, max_length=length, precision=precision, grad_checkpointing=ckpt)
    return int(estimate(get_spec(model), req).device_total_bytes)


def approx_footprint(model: str, batch: int, length: int, precision: str, ckpt: bool) -> int:
    """Fallback when the estimator is unavailable: AdamW states + Korthikanti et al. activations + context."""
    from hpo.memory.catalog import get_spec

    spec = get_spec(model)
    h, layers, heads, tokens = spec.hidden_size, spec.num_layers, spec.num_heads, batch * length
    scale = 2.0 if precision == "fp32" else 1.0
    per_layer = tokens * h * (34 + 5 * heads * length / h) * scale
    acts = (layers * tokens * h * 2 * scale + per_layer) if ckpt else layers * per_layer
    tensors = 16 * spec.params + acts + 32 * 2**20
    return int(tensors * 1.05 + 512 * 2**20)


def default_footprint() -> tuple[Footprint, str]:
    """The estimator when it works, else the built-in approximation (the table says which)."""
    try:
        estimator_footprint(MODELS[0], 8, 128, "fp32", False)
        return estimator_footprint, "hpo.memory.estimate"
    except Exception as exc:  # the estimator is optional here: any failure means "not usable"
        print(f"note: estimator unavailable ({type(exc).__name__}: {exc}); using approx_footprint")
        return approx_footprint, "approx_footprint"


def fallback_bounds(params: int) -> tuple[int, int]:
    """24 GB bounds when no GPU profile is available: large (>= 200M) models at batch <= 32."""
    return (64 if params < 200e6 else 32), 512


def default_bounds(gpu_memory: str = "24GB") -> tuple[Bounds, str]:
    """Bounds of the shipped GPU profile (hpo.gpu.load_profile) when it loads, else fallback_bounds."""
    try:
        from hpo.gpu import load_profile

        profile = load_profile(gpu_memory)
        profile.bounds(110_000_000)
    except Exception as exc:  # optional here, like the estimator
        print(f"note: GPU profile unavailable ({type(exc).__name__}: {exc}); using fallback_bounds")
        return fallback_bounds, "fallback_bounds"

    def bounds(params: int) -> tuple[int, int]:
        b = profile.bounds(params)
        return int(b.max_batch_size), int(b.max_length)

    return bounds, f"profile {getattr(profile, 'name', gpu_memory)}"


def duration_and_util(
    model: str, batch: int, length: int, precision: str, ckpt: bool, epochs: int, rng: random.Random
) -> tuple[float, float]:
    """Cost model: (6 x params + attention) FLOPs/token x tokens x epochs at a batch-dependent utilisation."""
    from hpo.memory.catalog import get_spec

    spec = get_spec(model)
    flops_per_token = 6 * spec.params + 12 * spec.num_layers * spec.hidden_size * length
    flops = flops_per_token * TRAIN_EXAMPLES * length * epochs * (4 / 3 if ckpt else 1.0)
    util = batch * length / (batch * length + SATURATION_TOKENS)
    seconds = STARTUP_S + flops / (PEAK_FLOPS[precision] * util)
    return seconds * math.exp(rng.gauss(0.0, 0.2)), util


class Mix:
    """The seeded trial mix every schedule runs, in the same order (``mix[k]`` is trial k, drawn lazily).

    Trials come from the criteria space within the GPU profile's ``bounds``; a configuration over ``capacity``
    is resampled, as the real tool prunes it by estimate before reserving.
    """

    def __init__(
        self,
        seed: int,
        footprint: Footprint,
        capacity: int,
        models: Sequence[str] = MODELS,
        precisions: Sequence[str] = PRECISIONS,
        bounds: Bounds = fallback_bounds,
    ) -> None:
        self.rng, self.footprint, self.capacity = random.Random(seed), footprint, capacity
        self.models, self.precisions, self.bounds = list(models), list(precisions), bounds
        self.trials: list[TrialSpec] = []

    def __getitem__(self, k: int) -> TrialSpec:
        from hpo.memory.catalog import get_spec

        while len(self.trials) <= k:
            rng, model = self.rng, self.rng.choice(self.models)
            max_batch, max_length = self.bounds(get_spec(model).params)
            batches = [b for b in BATCH_SIZES if b <= max_batch] or [min(BATCH_SIZES)]
            lengths = [n for n in MAX_LENGTHS if n <= max_length] or [min(MAX_LENGTHS)]
            batch, length, precision = rng.choice(batches), rng.choice(lengths), rng.choice(self.precisions)
            cfg = (model, batch, length, precision, rng.random() < 0.5)
            nbytes = self.footprint(*cfg)
            if nbytes > self.capacity:
                continue
            epochs = rng.randint(2, 5) if rng.random() < 0.5 else rng.randint(6, 20)  # pruned / early stop
            seconds, util = duration_and_util(*cfg, epochs, rng)
            self.trials.append(TrialSpec(len(self.trials), *cfg, nbytes, seconds, util))
        return self.trials[k]


def simulate(
    mix: Mix,
    n_trials: int,
    policy: str,
    par: int,
    card_bytes: int,
    capacity_bytes: int,
    *,
    crash_kills: str = "all",
    lost: str = "retry",
    max_attempts: int = 5,
    contention: bool = False,
    priority_after: float = 60.0,
) -> Result:
    """Run trials 0..n_trials-1 of ``mix`` with ``par`` workers under a "fixed" or "memory" policy."""
    valid = policy in ("fixed", "memory") and crash_kills in ("all", "newest") and lost in ("retry", "drop")
    if not valid:
        raise ValueError(f"unknown policy {policy!r}, crash_kills {crash_kills!r} or lost {lost!r}")
    queue, attempts = deque(range(n_trials)), [0] * n_trials
    running: dict[int, list[float]] = {}  # trial -> [remaining standalone seconds, start time]
    restarting: list[float] = []  # when each crashed worker is back (process restart, CUDA init)
    waiting: list[dict[str, Any]] = []  # ledger waiter records
    now = wasted = mem_integral = wait_total = max_wait = max_in_use = done_work = 0.0
    completed = crashes = killed = 0

    def in_use() -> int:
        return sum(mix[i].footprint for i in running)

    def start(i: int) -> None:
        running[i], attempts[i] = [mix[i].duration_s, now], attempts[i] + 1

    def fill() -> None:
        nonlocal crashes, killed, wasted, wait_total, max_wait
        restarting[:] = [t for t in restarting if t > now]
        while queue and len(running) + len(waiting) + len(restarting) < par:
            i = queue.popleft()
            if policy == "memory":
                record = {"key": str(i), "bytes": mix[i].footprint, "since": now}
                waiting.append(record | {"priority_at": now + priority_after})
                continue
            start(i)
            if in_use() > card_bytes:  # CUDA OOM: the old tool loses the attempt(s) it kills
                crashes += 1
                for j in list(running) if crash_kills == "all" else [i]:
                    wasted, killed = wasted + now - running.pop(j)[1] + STARTUP_S, killed + 1
                    restarting.append(now + STARTUP_S)
                    if lost == "retry" and attempts[j] < max_attempts:
                        queue.append(j)
        for w in sorted(waiting, key=lambda w: float(w["since"])):
            if admits(in_use(), capacity_bytes, int(w["bytes"]), held_back(waiting, now, str(w["key"]))):
                waiting.remove(w)
                wait_total, max_wait = wait_total + now - w["since"], max(max_wait, now - w["since"])
                start(int(w["key"]))

    fill()
    while running or restarting:
        rate = 1.0 / max(1.0, sum(mix[i].util for i in running)) if contention else 1.0
        step = min([left / rate for left, _ in running.values()] + [t - now for t in restarting])
        mem_integral, max_in_use = mem_integral + in_use() * step, max(max_in_use, in_use())
        now += step
        for i, state in list(running.items()):
            state[0] -= step * rate
            if state[0] <= 1e-9:
                del running[i]
                completed, done_work = completed + 1, done_work + mix[i].duration_s
        fill()
    assert not waiting, "every trial fits the capacity alone, so waiters always drain"
    hours = now / 3600 or 1e-9
    rates = (completed / hours, done_work / 3600 / hours, mem_integral / (now or 1.0) / card_bytes)
    waits = (max_in_use / GIB, wait_total / max(1, completed) / 60, max_wait / 60)
    numbers = (round(x, 3) for x in (wasted / 3600, hours, *rates, *waits))
    return Result(policy, par, n_trials, completed, crashes, killed, *numbers)


def run_all(
    mix: Mix, n_trials: int, par: int, card: int, capacity: int, extra_par: Sequence[int] = (), **kw: Any
) -> list[Result]:
    """Fixed PAR=par, par//2 and 1, then memory-aware PAR=par (and ``extra_par``), on the same mix."""
    fixed = sorted({par, max(1, par // 2), 1}, reverse=True)
    results = [simulate(mix, n_trials, "fixed", p, card, capacity, **kw) for p in fixed]
    return results + [simulate(mix, n_trials, "memory", p, card, capacity, **kw) for p in (par, *extra_par)]


ROW = "{:<20}{:>9}{:>10}{:>9}{:>8}{:>13}{:>6}{:>14}{:>10}{:>9}{:>10}{:>10}"
HEADER = (
    "schedule|done|trials/h|vs base|work/h|OOM crashes|lost|wasted GPU-h|mean mem|max GiB|wait min|max wait"
)


def table(results: Sequence[Result], baseline: Result) -> str:
    """A plain-text table; "vs base" is trials/h relative to ``baseline``."""
    rows = [ROW.format(*HEADER.split("|"))]
    rows.append("-" * len(rows[0]))
    for r in results:
        name = f"{'memory-aware' if r.policy == 'memory' else 'fixed'} PAR={r.par}"
        speed = (f"{r.trials_per_hour:.2f}", f"{r.trials_per_hour / baseline.trials_per_hour:.2f}x")
        loss = (f"{r.work_per_hour:.2f}", r.crashes, r.lost, f"{r.wasted_gpu_hours:.2f}")
        memory = (f"{r.mean_memory_util:.1%}", f"{r.max_in_use_gib:.1f}")
        waits = (f"{r.mean_wait_min:.1f}", f"{r.max_wait_min:.1f}")
        rows.append(ROW.format(name, f"{r.completed}/{r.trials}", *speed, *loss, *memory, *waits))
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Simulate the schedules, print the table, optionally write JSON."""
    parser = argparse.ArgumentParser(description="Scheduler benchmark on a simulated GPU (module doc).")
    add = parser.add_argument
    add("--n-trials", type=int, default=400, help="trials in the mix")
    add("--seed", type=int, default=0)
    add("--par", type=int, default=4, help="workers; fixed PAR=par and par//2 are compared with memory-aware")
    add("--extra-par", type=int, nargs="*", default=[], help="more memory-aware rows with these PAR")
    add("--gpu-gib", type=float, default=24.0, help="card memory (GiB)")
    add("--headroom-gib", type=float, default=1.5, help="ledger capacity = card - headroom")
    add("--crash-kills", choices=["all", "newest"], default="all", help="attempts an OOM crash kills")
    add("--lost", choices=["retry", "drop"], default="retry", help="whether a killed trial reruns")
    add("--max-attempts", type=int, default=5, help="attempts per trial with --lost retry")
    add("--contention", action="store_true", help="concurrent trials share GPU compute")
    add("--priority-after", type=float, default=60.0, help="ledger anti-starvation delay (s)")
    add("--models", nargs="+", default=list(MODELS), help="models of the mix")
    add("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS, help="precisions of the mix")
    add("--approx", action="store_true", help="use approx_footprint instead of the estimator")
    add("--out", type=Path, help="write config and results as JSON")
    args = parser.parse_args(argv)
    card, capacity = int(args.gpu_gib * GIB), int((args.gpu_gib - args.headroom_gib) * GIB)
    footprint, source = (approx_footprint, "approx_footprint") if args.approx else default_footprint()
    bounds, bounds_source = (fallback_bounds, "fallback_bounds") if args.approx else default_bounds()
    mix = Mix(args.seed, footprint, capacity, args.models, args.precisions, bounds)
    kw = {"crash_kills": args.crash_kills, "lost": args.lost, "max_attempts": args.max_attempts}
    kw |= {"contention": args.contention, "priority_after": args.priority_after}
    results = run_all(mix, args.n_trials, args.par, card, capacity, args.extra_par, **kw)
    baseline = next(r for r in results if r.policy == "fixed" and r.par == max(1, args.par // 2))
    print(
        f"{args.n_trials} trials (seed {args.seed}), card {args.gpu_gib:g} GiB, ledger capacity "
        f"{capacity / GIB:g} GiB, footprints {source}, bounds {bounds_source}, OOM kills {args.crash_kills}, "
        f"lost {args.lost}, contention {'on' if args.contention else 'off'}"
    )
    print(table(results, baseline))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        config |= {"footprint": source, "bounds": bounds_source}
        payload = {"config": config, "results": [asdict(r) for r in results]}
        args.out.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
