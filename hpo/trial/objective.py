"""The Optuna objective, one trial as a short story: sample -> size -> attempts -> outcome.

1. sample a config from the search space (``hpo.trial.space``) and estimate its peak memory;
2. record it (``hpo.trial.outcomes.started``) and prune it by estimate if it cannot fit the GPU budget;
3. run training attempts under the memory admission with the ``--on-oom`` policy (``hpo.trial.attempts``);
4. record the outcome: complete, pruned (memory estimate, OOM, early stop) or failed, and the MLflow run's
   real id if the run was created while MLflow was down and its writes have gone through since.
What each step records is listed in ``hpo.trial.keys``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import optuna
import torch

from hpo.agents.base import Agent
from hpo.config.catalog import get_spec
from hpo.config.study import StudyConfig, TrialConfig
from hpo.device.faults import FaultInjector, FaultPlan
from hpo.lifecycle import check_stop
from hpo.progress import Progress
from hpo.storage.dbcheck import is_disk_full
from hpo.tracking.tracker import Tracker
from hpo.trial import objectives, outcomes
from hpo.trial.admission import Admission, HostAdmission, no_admission, no_host_admission
from hpo.trial.attempts import Attempts
from hpo.trial.context import TrialContext, WorkerPoisoned
from hpo.trial.deaths import MAX_DEATHS, deaths_of
from hpo.trial.sizing import Sizer
from hpo.trial.space import SpaceContext, sample
from hpo.trial.training import EncodedData, Trainer
from hpo.units import GIB

log = logging.getLogger(__name__)


@dataclass
class Objective:
    """Callable objective for ``study.optimize``; one instance per process."""

    cfg: StudyConfig
    agent: Agent
    data: EncodedData
    tracker: Tracker
    progress: Progress
    device: torch.device
    space: SpaceContext
    sizer: Sizer
    faults: FaultPlan | None = None
    admission: Admission = no_admission
    host_admission: HostAdmission = no_host_admission
    on_start: Callable[[optuna.Trial], None] | None = None
    poisoned: bool = False  # a fatal CUDA error happened: this process must stop
    disk_full: bool = False  # a trial failed on a full disk: the run must stop
    last_number: int = -1  # the number of this process's latest trial
    worker: str | None = None  # which launcher worker runs this objective (hpo.run.protocol.WorkerId)
    sampler_seed: int | None = None  # the seed of this process's sampler (hpo.storage.study.seed_sampler)

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        self.last_number = trial.number
        try:
            return self._story(trial)
        except optuna.exceptions.UpdateFinishedTrialError:
            # another process finished the trial meanwhile (this one was frozen past the heartbeat grace): it
            # is theirs now; abandon it without another write (Optuna must not tell it either)
            over = outcomes.taken_over(trial, self.tracker)
            who = f"worker {self.worker}" if self.worker else "this process"
            log.warning("%s: %s while it ran it; abandoned, going on with the next trial", who, over)
            raise over from None

    def _story(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        try:
            if self.on_start is not None:  # the worker records the trial's process (hpo.run.worker)
                self.on_start(trial)
            check_stop()  # a stop that came while Optuna created the trial (hpo.lifecycle.stops_held)
            ctx = self._begin(trial)
        except KeyboardInterrupt as exc:
            outcomes.interrupted_early(trial, exc)
            raise
        try:
            return self._run(ctx)
        finally:
            if not self.disk_full:  # the storage may not take another write
                outcomes.run_id_resolved(ctx, self.tracker)

    def _run(self, ctx: TrialContext) -> float | tuple[float, ...]:
        """Run a begun trial to its value, or raise how it ended (pruned, failed, poisoned)."""
        deaths = deaths_of(ctx.trial.study, ctx.sampled)
        if deaths >= MAX_DEATHS:  # a died trial is retried once; a config never runs a third time
            raise outcomes.pruned_by_deaths(ctx, self.tracker, deaths)
        reason = self.sizer.over_budget(ctx.spec, ctx.tcfg, ctx.budget)
        if reason is not None:
            over = (ctx.budget.device_total_bytes - self.sizer.memory.limit_bytes) / GIB
            raise outcomes.pruned_by_estimate(ctx, self.tracker, reason, max(1e-6, over))
        try:
            result = self._attempts().run(ctx)
        except WorkerPoisoned:
            self.poisoned = True
            raise
        except Exception as exc:
            self.disk_full = self.disk_full or is_disk_full(exc)
            raise
        measured = self.sizer.measured(ctx.spec, ctx.tcfg, ctx.budget, ctx.peak) if ctx.peak else {}
        if not objectives.multi(self.cfg):
            return outcomes.completed(
                ctx, self.tracker, result, self.agent.metric_name, measured, self.cfg.epochs
            )
        values = objectives.values(self.cfg, ctx, result.best_metric, measured)
        recorded = measured | objectives.as_attrs(values)  # user attrs and MLflow metrics, beside the peaks
        outcomes.completed(ctx, self.tracker, result, self.agent.metric_name, recorded, self.cfg.epochs)
        return tuple(values.values())

    def _begin(self, trial: optuna.Trial) -> TrialContext:
        """Sample, estimate and record the trial: first as sampled, on this process's device."""
        tcfg = sample(trial, self.space)
        spec = get_spec(tcfg.model)
        ctx = TrialContext(
            trial=trial,
            sampled=tcfg,
            spec=spec,
            tcfg=tcfg,
            budget=self.sizer.estimate(spec, tcfg),
            device=self.device,
            on_gpu=self.device.type == "cuda" or self.sizer.memory.simulated,
            injector=FaultInjector(self.faults, trial.number),  # once per trial: a retry must not re-fire it
        )
        host = self.sizer.host_bytes(spec, tcfg, self.device.type == "cuda")
        mem = self.sizer.memory
        card = (mem.gpu_bytes, mem.headroom_bytes) if mem.gpu_bytes else None
        outcomes.started(
            ctx, self.tracker, host_bytes=host, worker=self.worker, sampler_seed=self.sampler_seed, card=card
        )
        self.progress.trial_started(trial.number, summary(tcfg))
        return ctx

    def _attempts(self) -> Attempts:
        trainer = Trainer(self.cfg, self.agent, self.data, self.tracker, self.progress, self.sizer)
        return Attempts(
            trainer,
            self.admission,
            self.sizer,
            self.tracker,
            self.cfg.on_oom,
            self.cfg.elastic,
            self.host_admission,
        )


def summary(cfg: TrialConfig) -> str:
    """One line for the progress display."""
    return (
        f"{cfg.model} bs={cfg.batch_size}x{cfg.grad_accum} len={cfg.max_length} lr={cfg.learning_rate:.2e} "
        f"{cfg.precision}{' ckpt' if cfg.grad_checkpointing else ''}"
    )
