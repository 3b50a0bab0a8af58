"""The schedules of the scheduler benchmark: a discrete-event simulation of one trial mix under each.

- fixed PAR (the old tool): a free worker starts the next trial at once. When the running footprints exceed
  the card, CUDA runs out of memory: the attempts it kills (all running trials, or crash_kills="newest") are
  lost, their time wasted, and each killed worker restarts (STARTUP_S). By default a killed trial reruns
  later (lost="retry", at most max_attempts), so every schedule owes the same trials; lost="drop" never
  reruns it, which makes "trials/h" favour the small trials that survive.
- memory-aware (hpo): every worker's CUDA context stays on the card for the worker's life, waiting or not;
  a taken trial waits until the ledger's own rule (hpo.run.reservations.admits + held_back) admits its
  estimate less the context beside the trials already running, within the ledger capacity (card - headroom).
  Its allocator is capped at the reservation + a margin (hpo.run.worker): a trial whose true footprint
  (``Form.real``: estimate x the estimator's error, hpo.bench.mix) is over that runs out of memory inside
  its own cap when it first reaches its peak, and is pruned (``--on-oom prune``); its neighbours run on.
  Those are "own OOMs".
- every schedule runs on true footprints: what sits on the card is each trial's true tensors + allocator
  (memory-aware: clipped by its cap) plus what no cap limits, each live worker's real CUDA context
  (``true_context_bytes``: it grows as kernels load, past what the estimate and the ledger count) and
  ``outside_cap_bytes``. When that sum exceeds the card, CUDA runs out of memory in the attempt that
  allocates (the newest, or every attempt on the card with crash_kills="all"): an "OOM crash", counted
  alike for fixed PAR and memory-aware. "lost GPU-h" sums the worker-hours of every lost attempt.
- ceiling: the most trials/h ANY schedule with PAR workers can reach without an OOM. Memory-time is
  conserved: sum over trials of (reservation x duration) <= (capacity - PAR contexts) x makespan, and
  sum of durations <= PAR x makespan. Memory-aware admission is judged against it.

``contention`` makes concurrent trials share the GPU's compute (processor sharing by standalone
utilisation); without it a trial runs as fast beside others as alone. "work/h" (standalone trial-hours
completed per hour) is the size-neutral throughput: "trials/h" rewards a schedule that loses its large trials.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hpo.bench.mix import STARTUP_S, Form, Mix
from hpo.memory.budget import CUDA_CONTEXT
from hpo.run.reservations import admits, held_back
from hpo.units import GIB

UNFIT = -1  # a queue entry for a config that cannot fit the card (see Mix)


@dataclass(frozen=True)
class Result:
    """Outcome of one schedule over the whole mix."""

    policy: str
    par: int
    trials: int
    completed: int
    crashes: int  # OOMs of the card that killed attempts (neighbour crashes), any schedule
    lost: int  # attempts lost: killed by those crashes, or out of memory inside their own cap
    lost_gpu_hours: float  # worker-hours of every lost attempt (its run time, + the killed worker's restart)
    makespan_hours: float
    trials_per_hour: float
    work_per_hour: float  # standalone trial-hours completed per wall hour (size-neutral throughput)
    mean_memory_util: float
    max_in_use_gib: float
    mean_wait_min: float
    max_wait_min: float
    own_ooms: int = 0  # trials that ran out of memory inside their own cap (memory-aware), pruned
    gpus: int = 1  # simulated cards (memory-aware, `hpo tune --gpus`): PAR workers per card


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
    crash_kills: str = "newest",
    lost: str = "retry",
    max_attempts: int = 5,
    contention: bool = False,
    priority_after: float = 60.0,
    unfit: str = "run",
    cap_margin_bytes: int | None = None,
    gpus: int = 1,
    true_context_bytes: int | None = None,
    outside_cap_bytes: int = 0,
) -> Result:
    """Run trials 0..n_trials-1 of ``mix`` with ``par`` workers under a "fixed" or "memory" policy.

    memory: the ledger rule of hpo (contexts held for the workers' lives, trials reserve the rest); with
    ``elastic`` a trial that waited ``elastic_after`` seconds takes the first of its forms that fits.
    Configs that cannot fit (``mix.unfit_before``) cost hpo nothing (pruned by estimate); under "fixed" with
    ``unfit="run"`` each one starts, runs out of memory at once (its start-up wasted, its neighbours killed
    as ``crash_kills`` says) and is lost; ``unfit="skip"`` leaves them out of every schedule.
    ``cap_margin_bytes``: the per-worker cap's margin over its reservation (default: the worker's rule,
    min(512 MiB, headroom / par)).
    ``gpus`` (memory-aware only): that many cards of ``card_bytes``, each with its own ledger and ``par``
    workers; a waiting trial starts on the first card whose ledger admits it (hpo.run.placement).
    ``true_context_bytes`` (default ``context_bytes``): each worker's real CUDA context, which the estimate
    and the ledger count as ``context_bytes``; ``outside_cap_bytes``: more per worker that no cap limits.
    """
    valid = policy in ("fixed", "memory") and crash_kills in ("all", "newest") and lost in ("retry", "drop")
    if not valid or unfit not in ("run", "skip"):
        raise ValueError(f"unknown policy {policy!r}, crash_kills {crash_kills!r}, lost {lost!r} or unfit")
    if gpus < 1 or (gpus > 1 and policy != "memory"):
        raise ValueError("several simulated GPUs need the memory-aware policy")
    mix.trials_upto(n_trials)
    queue: deque[int] = deque()
    for k in range(n_trials):
        queue.extend([UNFIT] * (mix.unfit_before[k] if policy == "fixed" and unfit == "run" else 0) + [k])
    attempts = [0] * n_trials
    # trial -> [remaining standalone seconds, start time, reserved bytes, utilisation, standalone seconds,
    #           OOMs in its own cap, card, true bytes on the card]
    running: dict[int, list[float]] = {}
    restarting: list[float] = []  # when each crashed worker is back (process restart, CUDA init)
    waiting: list[dict[str, Any]] = []  # ledger waiter records
    now = wasted = mem_integral = wait_total = max_wait = max_in_use = done_work = 0.0
    completed = crashes = killed = own_ooms = 0
    # memory-aware: each worker's context is on the card for its whole life; a trial reserves the rest
    ctx = context_bytes if policy == "memory" else 0
    worker = (context_bytes if true_context_bytes is None else true_context_bytes) + outside_cap_bytes
    margin = (
        min(512 * 2**20, (card_bytes - capacity_bytes) // par)
        if cap_margin_bytes is None
        else cap_margin_bytes
    )

    def in_use(gpu: int | None = None) -> int:
        """Bytes in use on card ``gpu`` (all cards: None)."""
        cards = gpus if gpu is None else 1
        held = (int(state[2]) for state in running.values() if gpu is None or int(state[6]) == gpu)
        return cards * par * ctx + sum(held)

    def on_card(gpu: int | None = None) -> int:
        """True bytes on card ``gpu`` (all: None): every live worker's real context and uncapped extras
        (fixed PAR: a running trial's worker) + each trial's true footprint, clipped by its cap."""
        cards = gpus if gpu is None else 1
        held = (int(state[7]) for state in running.values() if gpu is None or int(state[6]) == gpu)
        return (cards * par * worker if policy == "memory" else 0) + sum(held)

    def start(i: int, form: Form, gpu: int = 0) -> None:
        # the ledger holds the reservation (memory-aware); the card holds the true footprint: fixed PAR all of
        # it with its worker's real context, memory-aware its allocator's part up to the cap (reservation +
        # margin: over it, the trial runs out of memory inside its own cap at its peak and is pruned)
        tensors = form.real - context_bytes  # true tensors + allocator (the estimate's context taken out)
        ooms = policy == "memory" and form.real > form.footprint + margin
        left = form.peak_at_s if ooms else form.duration_s
        held = form.footprint - ctx if policy == "memory" else form.real
        true = min(tensors, form.footprint - ctx + margin) if policy == "memory" else tensors + worker
        running[i] = [left, now, held, form.util, form.duration_s, float(ooms), float(gpu), true]
        attempts[i] += 1
        if on_card(gpu) > card_bytes:  # CUDA OOM on the card, whichever schedule: the allocating attempt
            crash([i] if crash_kills == "newest" else [j for j, st in running.items() if int(st[6]) == gpu])

    def crash(victims: list[int]) -> None:
        """An OOM that kills attempts (not inside their own cap): each is lost and its worker restarts."""
        nonlocal crashes, killed, wasted
        crashes += 1
        for j in victims:
            wasted, killed = wasted + now - running.pop(j)[1] + STARTUP_S, killed + 1
            restarting.append(now + STARTUP_S)
            if lost == "retry" and attempts[j] < max_attempts:
                queue.append(j)

    def eligible(w: dict[str, Any]) -> tuple[Form, ...]:
        forms = mix[int(w["key"])].forms
        return forms if elastic and now - w["since"] >= elastic_after - 1e-9 else forms[:1]

    def fill() -> None:
        nonlocal crashes, killed, wasted, wait_total, max_wait
        restarting[:] = [t for t in restarting if t > now]
        while queue and len(running) + len(waiting) + len(restarting) < par * gpus:
            i = queue.popleft()
            if policy == "memory":
                record = {"key": str(i), "bytes": mix[i].footprint - ctx, "since": now}
                waiting.append(record | {"priority_at": now + priority_after})
                continue
            if i == UNFIT:  # out of memory on its first step, alone or not: lost for good
                killed, wasted = killed + 1, wasted + STARTUP_S
                restarting.append(now + STARTUP_S)
                crash(list(running) if crash_kills == "all" else [])
            else:
                start(i, mix[i].forms[0])
        for w in sorted(waiting, key=lambda w: float(w["since"])):
            forms = eligible(w)
            w["bytes"] = min(f.footprint for f in forms) - ctx  # the least it can run with (hpo.run.ledger)
            back = held_back(waiting, now, str(w["key"]))
            for gpu in range(gpus):  # the first card whose ledger admits one of its eligible forms
                room = (f for f in forms if admits(in_use(gpu), capacity_bytes, f.footprint - ctx, back))
                form = next(room, None)
                if form is not None:
                    waiting.remove(w)
                    wait_total, max_wait = wait_total + now - w["since"], max(max_wait, now - w["since"])
                    start(int(w["key"]), form, gpu)
                    break

    fill()
    while running or restarting or waiting:
        rate = 1.0 / max(1.0, sum(state[3] for state in running.values())) if contention else 1.0
        events = [state[0] / rate for state in running.values()] + [t - now for t in restarting]
        if elastic:  # a waiter's lighter forms become eligible
            events += [w["since"] + elastic_after - now for w in waiting if w["since"] + elastic_after > now]
        if not events:
            raise AssertionError("a waiter can never run: every trial must fit beside the workers' contexts")
        step = min(events)
        mem_integral, max_in_use = mem_integral + on_card() * step, max(max_in_use, on_card())
        now += step
        for i, state in list(running.items()):
            state[0] -= step * rate
            if state[0] <= 1e-9 and state[5]:  # out of memory inside its own cap: pruned, work lost
                del running[i]
                own_ooms, killed, wasted = own_ooms + 1, killed + 1, wasted + now - state[1]
            elif state[0] <= 1e-9:
                del running[i]
                completed, done_work = completed + 1, done_work + mix[i].duration_s
        fill()
    hours = now / 3600 or 1e-9
    rates = (completed / hours, done_work / 3600 / hours, mem_integral / (now or 1.0) / card_bytes / gpus)
    waits = (max_in_use / GIB, wait_total / max(1, completed) / 60, max_wait / 60)
    w, h, tph, wph, mem, top, mean_wait, longest = (
        round(x, 3) for x in (wasted / 3600, hours, *rates, *waits)
    )
    name = "memory-elastic" if policy == "memory" and elastic else policy
    numbers = (w, h, tph, wph, mem, top, mean_wait, longest)
    return Result(name, par, n_trials, completed, crashes, killed, *numbers, own_ooms=own_ooms, gpus=gpus)


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
ROW = "{:<36}{:>9}{:>10}{:>9}{:>8}{:>13}{:>9}{:>6}{:>14}{:>10}{:>9}{:>10}{:>10}"
HEADER = (
    "schedule|done|trials/h|vs base|work/h|OOM crashes|own OOM|lost|lost GPU-h|mean mem|max GiB|wait min"
    "|max wait"
)


def table(results: Sequence[Result], baseline: Result, ceilings: dict[str, float] | None = None) -> str:
    """A plain-text table; "vs base" is trials/h relative to ``baseline``; ceilings (name: trials/h) last."""
    rows = [ROW.format(*HEADER.split("|"))]
    rows.append("-" * len(rows[0]))
    for r in results:
        name = f"{NAMES[r.policy]} PAR={r.par}" + (f" x {r.gpus} GPUs" if r.gpus > 1 else "")
        speed = (f"{r.trials_per_hour:.2f}", f"{r.trials_per_hour / baseline.trials_per_hour:.2f}x")
        loss = (f"{r.work_per_hour:.2f}", r.crashes, r.own_ooms, r.lost, f"{r.lost_gpu_hours:.2f}")
        memory = (f"{r.mean_memory_util:.1%}", f"{r.max_in_use_gib:.1f}")
        waits = (f"{r.mean_wait_min:.1f}", f"{r.max_wait_min:.1f}")
        rows.append(ROW.format(name, f"{r.completed}/{r.trials}", *speed, *loss, *memory, *waits))
    for name, rate in (ceilings or {}).items():
        vs = f"{rate / baseline.trials_per_hour:.2f}x"
        rows.append(ROW.format(name, "", f"{rate:.2f}", vs, *[""] * 9).rstrip())
    return "\n".join(rows)
