"""Scheduler benchmark: fixed PAR vs memory-aware admission on a simulated GPU (24 GB by default).

Discrete-event simulation of one seeded trial mix under each schedule. The mix is what `hpo tune` samples on
a CUDA card: configs drawn by ``hpo.space.sample`` (random sampler, seeded) from a study's search space and
models within the GPU profile's bounds (``--config``, default ``configs/studies/criteria-24gb.yaml``: base
and large encoders); footprints are the memory estimator's device totals (``hpo.memory.estimate``, what a
worker reserves); durations come from a compute cost model with noise. A config that does not fit beside
the other workers' CUDA contexts is pruned by estimate before it costs GPU time, as in the tool, and
replaced by the next draw (the table's header says how many were).

- fixed PAR (the old tool): a free worker starts the next trial at once. When the running footprints exceed
  the card, CUDA runs out of memory: the attempts it kills (all running trials, or --crash-kills newest) are
  lost, their time wasted, and each killed worker restarts (STARTUP_S). By default a killed trial reruns
  later (--lost retry, at most --max-attempts), so every schedule owes the same trials; --lost drop never
  reruns it, which makes "trials/h" favour the small trials that survive.
- memory-aware (hpo): every worker's CUDA context stays on the card for the worker's life, waiting or not;
  a taken trial waits until the ledger's own rule (hpo.ledger.admits + held_back) admits its estimate less
  the context beside the trials already running, within the ledger capacity (card - headroom).
- ceiling: the most trials/h ANY schedule with PAR workers can reach without an OOM. Memory-time is
  conserved: sum over trials of (reservation x duration) <= (capacity - PAR contexts) x makespan, and
  sum of durations <= PAR x makespan. Memory-aware admission is judged against it.

--contention makes concurrent trials share the GPU's compute (processor sharing by standalone utilisation);
without it a trial runs as fast beside others as alone. "work/h" (standalone trial-hours completed per hour)
is the size-neutral throughput: "trials/h" rewards a schedule that loses its large trials.

    python scripts/bench_scheduler.py [--config configs/studies/criteria-24gb.yaml] [--n-trials 400]
        [--seed 0] [--par 4] [--contention] [--out runs/bench.json]
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
from hpo.config import TrialConfig
from hpo.memory.budget import CUDA_CONTEXT
from hpo.run.reservations import admits, held_back

GIB = 2**30
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "studies" / "criteria-24gb.yaml"
PEAK_FLOPS = {"fp32": 20e12, "fp16": 55e12, "bf16": 55e12, "bf16_pure": 55e12}  # sustained, 24 GB class
TRAIN_EXAMPLES, STARTUP_S, SATURATION_TOKENS = 8000, 45.0, 4096
UNFIT = -1  # a queue entry for a config that cannot fit the card (see Mix)


Footprint = Callable[[TrialConfig], int]  # device-level peak bytes (CUDA context included)
Draw = Callable[[], TrialConfig]  # the next sampled config


@dataclass(frozen=True)
class Form:
    """One way to run a trial: its peak device footprint, standalone duration and GPU utilisation."""

    footprint: int
    duration_s: float
    util: float  # fraction of the GPU's compute the trial keeps busy when it runs alone


@dataclass(frozen=True)
class TrialSpec:
    """One trial of the mix: its sampled configuration and forms (as sampled first, then hpo.elastic's)."""

    index: int
    config: TrialConfig
    forms: tuple[Form, ...]

    @property
    def footprint(self) -> int:
        return self.forms[0].footprint

    @property
    def duration_s(self) -> float:
        return self.forms[0].duration_s

    @property
    def util(self) -> float:
        return self.forms[0].util


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


def estimator_footprint(cfg: TrialConfig) -> int:
    """Device-level peak from hpo.memory.estimate (what a worker's trial needs, its CUDA context included)."""
    from hpo.memory.catalog import get_spec
    from hpo.memory.estimate import estimate
    from hpo.trial.sizing import memory_request

    return int(estimate(get_spec(cfg.model), memory_request(cfg, 2)).device_total_bytes)


def space_draw(
    config: Path | None,
    seed: int,
    gpu_memory: str = "24GB",
    models: Sequence[str] | None = None,
    precisions: Sequence[str] | None = None,
) -> Draw:
    """Configs as `hpo tune` samples them on a CUDA card of ``gpu_memory``: hpo.space.sample over the study's
    space and models (``config``, else the criteria agent's defaults), optionally overridden, seeded."""
    import optuna

    from hpo.config import load_config
    from hpo.gpu import load_profile
    from hpo.trial.space import SpaceContext, sample

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    overrides: dict[str, Any] = {} if config else {"agent": "criteria"}
    if models:
        overrides["models"] = list(models)
    cfg = load_config(config, overrides)
    space = cfg.space.model_copy(update={"precision": list(precisions)}) if precisions else cfg.space
    ctx = SpaceContext(tuple(cfg.models), space, on_cuda=True, profile=load_profile(gpu_memory))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))

    def draw() -> TrialConfig:
        trial = study.ask()
        cfg = sample(trial, ctx)
        study.tell(trial, 0.0)
        return cfg

    return draw


def duration_and_util(cfg: TrialConfig, epochs: int, noise: float) -> tuple[float, float]:
    """Cost model: (2 + 4 x trainable share) x params + attention FLOPs per token, x tokens x epochs, at a
    micro-batch-dependent utilisation; checkpointing recomputes the forward pass; x ``noise``."""
    from hpo.memory.catalog import get_spec

    spec = get_spec(cfg.model)
    trainable = 1.0 - min(cfg.frozen_layers, spec.num_layers) / max(1, spec.num_layers)
    length = cfg.max_length
    flops_per_token = (2 + 4 * trainable) * spec.params + 12 * spec.num_layers * spec.hidden_size * length
    ckpt = 4 / 3 if cfg.grad_checkpointing else 1.0
    flops = flops_per_token * TRAIN_EXAMPLES * length * epochs * ckpt
    util = cfg.batch_size * length / (cfg.batch_size * length + SATURATION_TOKENS)
    seconds = STARTUP_S + flops / (PEAK_FLOPS.get(cfg.precision, PEAK_FLOPS["fp32"]) * util)
    return seconds * noise, util


class Mix:
    """The seeded trial mix every schedule runs, in the same order (``mix[k]`` is trial k, drawn lazily).

    A config whose footprint is over ``limit`` cannot run: hpo prunes it by estimate (no GPU time) and the
    next one is drawn; ``unfit_before[k]`` counts those drawn just before trial k (the old tool, which has
    no estimator, runs them: see ``simulate``), ``pruned`` all of them. Each trial also carries its lighter
    equivalent forms (hpo.elastic), cheapest first, with the same epochs and noise.
    """

    def __init__(self, seed: int, footprint: Footprint, limit: int, draw: Draw) -> None:
        self.rng, self.footprint, self.limit, self.draw = random.Random(seed), footprint, limit, draw
        self.trials: list[TrialSpec] = []
        self.unfit_before: list[int] = []
        self.pruned = 0

    def __getitem__(self, k: int) -> TrialSpec:
        from hpo.trial.elastic import lighter_forms

        unfit = 0
        while len(self.trials) <= k:
            cfg = self.draw()
            nbytes = self.footprint(cfg)
            if nbytes > self.limit:
                self.pruned, unfit = self.pruned + 1, unfit + 1
                continue
            self.unfit_before.append(unfit)
            unfit = 0
            rng = self.rng
            epochs = rng.randint(2, 5) if rng.random() < 0.5 else rng.randint(6, 20)  # pruned / early stop
            noise = math.exp(rng.gauss(0.0, 0.2))
            forms = [Form(nbytes, *duration_and_util(cfg, epochs, noise))]
            for light in lighter_forms(cfg):
                size = self.footprint(light)
                if size < nbytes:  # as the worker does: only forms that need less memory
                    forms.append(Form(size, *duration_and_util(light, epochs, noise)))
            self.trials.append(TrialSpec(len(self.trials), cfg, tuple(forms)))
        return self.trials[k]

    def trials_upto(self, n: int) -> list[TrialSpec]:
        """Trials 0..n-1 (drawn if needed)."""
        return [self[k] for k in range(n)]


def simulate(
    mix: Mix,
    n_trials: int,
    policy: str,
    par: int,
    card_bytes: int,
    capacity_bytes: int,
    *,
    context_bytes: int = CUDA_CONTEXT,
    elastic: bool = True,
    elastic_after: float = 60.0,
    crash_kills: str = "all",
    lost: str = "retry",
    max_attempts: int = 5,
    contention: bool = False,
    priority_after: float = 60.0,
    unfit: str = "run",
) -> Result:
    """Run trials 0..n_trials-1 of ``mix`` with ``par`` workers under a "fixed" or "memory" policy.

    memory: the ledger rule of hpo (contexts held for the workers' lives, trials reserve the rest); with
    ``elastic`` a trial that waited ``elastic_after`` seconds takes the first of its forms that fits.
    Configs that cannot fit (``mix.unfit_before``) cost hpo nothing (pruned by estimate); under "fixed" with
    ``unfit="run"`` each one starts, runs out of memory at once (its start-up wasted, its neighbours killed
    as ``crash_kills`` says) and is lost; ``unfit="skip"`` leaves them out of every schedule.
    """
    valid = policy in ("fixed", "memory") and crash_kills in ("all", "newest") and lost in ("retry", "drop")
    if not valid or unfit not in ("run", "skip"):
        raise ValueError(f"unknown policy {policy!r}, crash_kills {crash_kills!r}, lost {lost!r} or unfit")
    mix.trials_upto(n_trials)
    queue: deque[int] = deque()
    for k in range(n_trials):
        queue.extend([UNFIT] * (mix.unfit_before[k] if policy == "fixed" and unfit == "run" else 0) + [k])
    attempts = [0] * n_trials
    # trial -> [remaining standalone seconds, start time, reserved bytes, utilisation, standalone seconds]
    running: dict[int, list[float]] = {}
    restarting: list[float] = []  # when each crashed worker is back (process restart, CUDA init)
    waiting: list[dict[str, Any]] = []  # ledger waiter records
    now = wasted = mem_integral = wait_total = max_wait = max_in_use = done_work = 0.0
    completed = crashes = killed = 0
    # memory-aware: each worker's context is on the card for its whole life; a trial reserves the rest
    ctx = context_bytes if policy == "memory" else 0

    def in_use() -> int:
        return par * ctx + sum(int(state[2]) for state in running.values())

    def start(i: int, form: Form) -> None:
        running[i] = [form.duration_s, now, form.footprint - ctx, form.util, form.duration_s]
        attempts[i] += 1

    def eligible(w: dict[str, Any]) -> tuple[Form, ...]:
        forms = mix[int(w["key"])].forms
        return forms if elastic and now - w["since"] >= elastic_after - 1e-9 else forms[:1]

    def fill() -> None:
        nonlocal crashes, killed, wasted, wait_total, max_wait
        restarting[:] = [t for t in restarting if t > now]
        while queue and len(running) + len(waiting) + len(restarting) < par:
            i = queue.popleft()
            if policy == "memory":
                record = {"key": str(i), "bytes": mix[i].footprint - ctx, "since": now}
                waiting.append(record | {"priority_at": now + priority_after})
                continue
            if i == UNFIT:  # out of memory on its first step, alone or not: lost for good
                crashes, killed, wasted = crashes + 1, killed + 1, wasted + STARTUP_S
                restarting.append(now + STARTUP_S)
                victims = list(running) if crash_kills == "all" else []
            else:
                start(i, mix[i].forms[0])
                victims = [] if in_use() <= card_bytes else list(running) if crash_kills == "all" else [i]
                crashes += 1 if victims else 0
            for j in victims:  # CUDA OOM: the old tool loses the attempt(s) it kills
                wasted, killed = wasted + now - running.pop(j)[1] + STARTUP_S, killed + 1
                restarting.append(now + STARTUP_S)
                if lost == "retry" and attempts[j] < max_attempts:
                    queue.append(j)
        for w in sorted(waiting, key=lambda w: float(w["since"])):
            forms = eligible(w)
            w["bytes"] = min(f.footprint for f in forms) - ctx  # the least it can run with (hpo.ledger)
            back = held_back(waiting, now, str(w["key"]))
            form = next((f for f in forms if admits(in_use(), capacity_bytes, f.footprint - ctx, back)), None)
            if form is not None:
                waiting.remove(w)
                wait_total, max_wait = wait_total + now - w["since"], max(max_wait, now - w["since"])
                start(int(w["key"]), form)

    fill()
    while running or restarting or waiting:
        rate = 1.0 / max(1.0, sum(state[3] for state in running.values())) if contention else 1.0
        events = [state[0] / rate for state in running.values()] + [t - now for t in restarting]
        if elastic:  # a waiter's lighter forms become eligible
            events += [w["since"] + elastic_after - now for w in waiting if w["since"] + elastic_after > now]
        if not events:
            raise AssertionError("a waiter can never run: every trial must fit beside the workers' contexts")
        step = min(events)
        mem_integral, max_in_use = mem_integral + in_use() * step, max(max_in_use, in_use())
        now += step
        for i, state in list(running.items()):
            state[0] -= step * rate
            if state[0] <= 1e-9:
                del running[i]
                completed, done_work = completed + 1, done_work + mix[i].duration_s
        fill()
    hours = now / 3600 or 1e-9
    rates = (completed / hours, done_work / 3600 / hours, mem_integral / (now or 1.0) / card_bytes)
    waits = (max_in_use / GIB, wait_total / max(1, completed) / 60, max_wait / 60)
    numbers = (round(x, 3) for x in (wasted / 3600, hours, *rates, *waits))
    name = "memory-elastic" if policy == "memory" and elastic else policy
    return Result(name, par, n_trials, completed, crashes, killed, *numbers)


def ceiling(
    mix: Mix,
    n_trials: int,
    par: int,
    capacity_bytes: int,
    context_bytes: int = CUDA_CONTEXT,
    elastic: bool = False,
) -> float:
    """Trials/h no zero-OOM schedule of ``par`` workers can beat on this mix (no contention): the makespan is
    at least the reserved memory-time over the room the contexts leave, the work over ``par``, and the longest
    trial. ``elastic``: each trial may run in any of its forms (each term takes its best form)."""
    trials = mix.trials_upto(n_trials)
    forms = [t.forms if elastic else t.forms[:1] for t in trials]
    room = capacity_bytes - par * context_bytes
    memory_time = sum(min((f.footprint - context_bytes) * f.duration_s for f in fs) for fs in forms) / room
    durations = [min(f.duration_s for f in fs) for fs in forms]
    makespan = max(memory_time, sum(durations) / par, max(durations))
    return n_trials / (makespan / 3600)


def run_all(
    mix: Mix, n_trials: int, par: int, card: int, capacity: int, extra_par: Sequence[int] = (), **kw: Any
) -> list[Result]:
    """Fixed PAR=par, par//2 and 1; memory-aware PAR=par without and with elastic forms (hpo's default), and
    with ``extra_par``; all on the same mix."""
    fixed = sorted({par, max(1, par // 2), 1}, reverse=True)
    kw = {k: v for k, v in kw.items() if k != "elastic"}
    results = [simulate(mix, n_trials, "fixed", p, card, capacity, **kw) for p in fixed]
    results.append(simulate(mix, n_trials, "memory", par, card, capacity, elastic=False, **kw))
    return results + [simulate(mix, n_trials, "memory", p, card, capacity, **kw) for p in (par, *extra_par)]


NAMES = {"fixed": "fixed", "memory": "memory-aware", "memory-elastic": "memory-aware+elastic"}
ROW = "{:<28}{:>9}{:>10}{:>9}{:>8}{:>13}{:>6}{:>14}{:>10}{:>9}{:>10}{:>10}"
HEADER = (
    "schedule|done|trials/h|vs base|work/h|OOM crashes|lost|wasted GPU-h|mean mem|max GiB|wait min|max wait"
)


def table(results: Sequence[Result], baseline: Result, ceilings: dict[str, float] | None = None) -> str:
    """A plain-text table; "vs base" is trials/h relative to ``baseline``; ceilings (name: trials/h) last."""
    rows = [ROW.format(*HEADER.split("|"))]
    rows.append("-" * len(rows[0]))
    for r in results:
        name = f"{NAMES[r.policy]} PAR={r.par}"
        speed = (f"{r.trials_per_hour:.2f}", f"{r.trials_per_hour / baseline.trials_per_hour:.2f}x")
        loss = (f"{r.work_per_hour:.2f}", r.crashes, r.lost, f"{r.wasted_gpu_hours:.2f}")
        memory = (f"{r.mean_memory_util:.1%}", f"{r.max_in_use_gib:.1f}")
        waits = (f"{r.mean_wait_min:.1f}", f"{r.max_wait_min:.1f}")
        rows.append(ROW.format(name, f"{r.completed}/{r.trials}", *speed, *loss, *memory, *waits))
    for name, rate in (ceilings or {}).items():
        vs = f"{rate / baseline.trials_per_hour:.2f}x"
        rows.append(ROW.format(name, "", f"{rate:.2f}", vs, *[""] * 8).rstrip())
    return "\n".join(rows)


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
    add("--crash-kills", choices=["all", "newest"], default="all", help="attempts an OOM crash kills")
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
    add("--out", type=Path, help="write config and results as JSON")
    args = parser.parse_args(argv)
    from hpo.units import parse_memory

    card = parse_memory(args.gpu_memory)
    capacity = card - int(args.headroom_gib * GIB)
    config = None if args.agent_defaults else args.config
    source = "criteria agent defaults" if config is None else str(config)
    pars = [args.par, *args.extra_par]
    kw = {"crash_kills": args.crash_kills, "lost": args.lost, "max_attempts": args.max_attempts}
    kw |= {"unfit": args.unfit, "contention": args.contention, "priority_after": args.priority_after}
    kw |= {"elastic_after": args.elastic_after}
    runs = []
    for seed in range(args.seed, args.seed + args.repeat):
        draw = space_draw(config, seed, args.gpu_memory, args.models, args.precisions)
        # the tool prunes what cannot fit beside the other workers' contexts; one mix for every row
        mix = Mix(seed, estimator_footprint, capacity - (max(pars) - 1) * CUDA_CONTEXT, draw)
        results = run_all(mix, args.n_trials, args.par, card, capacity, args.extra_par, **kw)
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
        )
        print(table(results, baseline, ceilings))
    if args.repeat > 1:
        seeds, base = f"{args.seed}..{args.seed + args.repeat - 1}", max(1, args.par // 2)
        print(f"\nseeds {seeds}, trials/h vs fixed PAR={base}: mean (min..max)")
        for k, row in enumerate(runs[0]["results"]):
            ratios = [run["results"][k]["vs_base"] for run in runs]
            name = f"{NAMES[row['policy']]} PAR={row['par']}"
            print(f"  {name:<28}{sum(ratios) / len(ratios):.2f}x ({min(ratios):.2f}..{max(ratios):.2f})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        payload = {"config": settings | {"mix": source}, "runs": runs}
        args.out.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
