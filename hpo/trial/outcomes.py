"""The only writer of a trial's Optuna user attrs and MLflow fields (names in ``hpo.trial.keys``).

Each function records one event of the story in ``hpo.trial.objective``. Pruned and failed outcomes also close
the MLflow run with the matching status (OOM -> FAILED, pruned by estimate or early stop -> KILLED) and mark
the trial infeasible with ``trial.set_constraint`` where memory was the cause, so TPE never ranks such a
config as promising, whatever it reported before failing.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from typing import Any

import optuna
from optuna.trial import TrialState

from hpo.config.study import TrialConfig
from hpo.storage.study import fail_trial, trial_by_number
from hpo.tracking.tracker import RunStatus, Tracker
from hpo.train.loop import EpochResult, TrainResult
from hpo.trial import keys as K
from hpo.trial.context import TrialContext, TrialTakenOver, WorkerPoisoned
from hpo.trial.elastic import describe
from hpo.units import gb

MEMORY_CONSTRAINT = "memory"


def end_tags(
    number: int, state: str, reason: str | None = None, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The tags that close a trial's MLflow run: state, pruned reason (``tags.pruned_reason = 'oom'``) and
    the run's new name ("trial 12 · pruned: oom")."""
    tags = {K.STATE_TAG: state, K.RUN_NAME_TAG: K.run_name(number, state, reason), **(extra or {})}
    if state == "PRUNED" and reason:
        tags[K.PRUNED_REASON] = reason
    return tags


def _attrs(ctx: TrialContext, values: dict[str, Any]) -> None:
    for key, value in values.items():
        ctx.trial.set_user_attr(key, value)


def started(
    ctx: TrialContext,
    tracker: Tracker,
    *,
    host_bytes: int = 0,
    worker: str | None = None,
    sampler_seed: int | None = None,
    card: tuple[int, int] | None = None,
) -> None:
    """The sampled config and its estimate (and which worker and sampler seed proposed it, and the card and
    headroom it was sized against), on the trial and a new MLflow child run."""
    estimated = gb(ctx.budget.device_total_bytes)
    lineage: dict[str, Any] = {K.WORKER: worker, K.SAMPLER_SEED: sampler_seed}
    if card is not None:
        lineage |= {K.GPU_GB: gb(card[0]), K.HEADROOM_GB: gb(card[1])}
    _attrs(
        ctx,
        {
            K.TRIAL_CONFIG: ctx.sampled.model_dump(),
            K.ESTIMATED_PEAK_GB: estimated,
            K.ESTIMATE_METHOD: ctx.budget.method,
            K.DEVICE: ctx.device.type,
            K.HOST: socket.gethostname(),
            K.PID: os.getpid(),
            K.ESTIMATED_HOST_GB: gb(host_bytes),
        }
        | {k: v for k, v in lineage.items() if v is not None},
    )
    params = {**ctx.sampled.model_dump(), "effective_batch": ctx.sampled.effective_batch}
    ctx.run_id = tracker.start_trial(ctx.number, {**params, K.ESTIMATED_PEAK_GB: estimated})
    if ctx.run_id is not None:
        ctx.trial.set_user_attr(K.MLFLOW_RUN_ID, ctx.run_id)


def pruned_by_estimate(
    ctx: TrialContext, tracker: Tracker, reason: str, over_gb: float
) -> optuna.TrialPruned:
    """The config cannot fit: pruned before any model is loaded."""
    ctx.trial.set_user_attr(K.PRUNED_REASON, K.REASON_MEMORY_ESTIMATE)
    ctx.trial.set_constraint(MEMORY_CONSTRAINT, over_gb)
    tracker.end_trial(ctx.run_id, "KILLED", end_tags(ctx.number, "PRUNED", K.REASON_MEMORY_ESTIMATE))
    return optuna.TrialPruned(f"memory estimate: {reason}")


def admission_timed_out(ctx: TrialContext, tracker: Tracker, reason: str) -> optuna.TrialPruned:
    """No room in the GPU ledger within ``--admission-timeout``: pruned before any model is loaded."""
    ctx.trial.set_user_attr(K.PRUNED_REASON, K.REASON_ADMISSION_TIMEOUT)
    tracker.end_trial(ctx.run_id, "KILLED", end_tags(ctx.number, "PRUNED", K.REASON_ADMISSION_TIMEOUT))
    return optuna.TrialPruned(f"admission timeout: {reason}")


def admitted(
    ctx: TrialContext,
    tracker: Tracker,
    asked_at: float,
    before: TrialConfig,
    form: int,
    gpu: str | None = None,
) -> None:
    """The ledger admitted the trial in ``ctx.tcfg`` (``form`` 0: as ``before``, else a lighter form) on
    ``gpu`` (a ledger key, with several GPUs: ``hpo.run.placement``)."""
    now = time.time()
    if gpu is not None and K.GPU not in ctx.trial.user_attrs:
        tracker.log_params(ctx.run_id, {K.GPU: gpu})  # write-once: a retry's GPU only in the user attrs
    where = {K.GPU: gpu} if gpu is not None else {}
    _attrs(ctx, {K.ADMISSION_WAIT_S: round(now - asked_at, 3), K.ADMITTED_AT: now, **where})
    if not form:
        return
    first = K.ELASTIC_FORM not in ctx.trial.user_attrs
    how = describe(before, ctx.tcfg)
    peak = gb(ctx.budget.device_total_bytes)
    _attrs(ctx, {K.ELASTIC_FORM: how, K.RUN_CONFIG: ctx.tcfg.model_dump(), K.RUN_ESTIMATED_PEAK_GB: peak})
    # MLflow params are write-once: an OOM retry (--on-oom shrink) may admit another form, which only the
    # user attrs follow
    if first:
        run = ctx.tcfg
        params = {K.ELASTIC_FORM: how, "run_batch_size": run.batch_size, "run_grad_accum": run.grad_accum}
        tracker.log_params(ctx.run_id, params | {"run_grad_checkpointing": run.grad_checkpointing})


def run_id_resolved(ctx: TrialContext, tracker: Tracker) -> None:
    """A run created while MLflow was down has a placeholder id; once its writes went through, the trial
    (still RUNNING: finished trials are immutable) records the real one."""
    real = tracker.resolve(ctx.run_id)
    if real is not None and real != ctx.run_id:
        ctx.run_id = real
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # finished by another process
            ctx.trial.set_user_attr(K.MLFLOW_RUN_ID, real)


def released(ctx: TrialContext) -> None:
    """The trial gave its memory reservation back."""
    ctx.trial.set_user_attr(K.RELEASED_AT, time.time())


def epoch_done(ctx: TrialContext, tracker: Tracker, r: EpochResult, metric: str) -> None:
    """Per-epoch metrics on the MLflow run (Optuna gets the value through ``trial.report``)."""
    metrics = {f"val_{metric}": r.val_metric, "val_loss": r.val_loss, "train_loss": r.train_loss}
    tracker.log_metrics(
        ctx.run_id, metrics | {"learning_rate": r.learning_rate, "epoch_seconds": r.seconds}, step=r.epoch
    )


def early_stopped(ctx: TrialContext, tracker: Tracker) -> None:
    """Pruned by the pruner (Hyperband + patience); the caller re-raises the TrialPruned."""
    ctx.trial.set_user_attr(K.PRUNED_REASON, K.REASON_EARLY_STOP)
    ctx.trial.set_constraint(MEMORY_CONSTRAINT, 0.0)
    tracker.end_trial(ctx.run_id, "KILLED", end_tags(ctx.number, "PRUNED", K.REASON_EARLY_STOP))


def interrupted(ctx: TrialContext, tracker: Tracker, exc: BaseException) -> None:
    """Ctrl-C / SIGTERM / launcher gone: Optuna marks the trial FAIL; the reason goes on the trial and no
    MLflow run is left RUNNING either."""
    interrupted_early(ctx.trial, exc)
    tracker.end_trial(
        ctx.run_id, "KILLED", end_tags(ctx.number, "FAIL", "interrupted", {K.ERROR: "interrupted"})
    )


def interrupted_early(trial: optuna.Trial, exc: BaseException) -> None:
    """Interrupted while sampling or estimating (no MLflow run yet): the reason on the FAIL trial (unless
    another process finished it already: the interrupt goes on all the same)."""
    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        trial.set_user_attr(K.ERROR, f"interrupted: {exc}" if str(exc) else "interrupted")


def pruned_by_deaths(ctx: TrialContext, tracker: Tracker, deaths: int) -> optuna.TrialPruned:
    """The config (or a near-identical one) already killed its worker ``deaths`` times: not run again."""
    ctx.trial.set_user_attr(K.PRUNED_REASON, K.REASON_WORKER_DEATHS)
    ctx.trial.set_constraint(MEMORY_CONSTRAINT, 1.0)
    tracker.end_trial(ctx.run_id, "KILLED", end_tags(ctx.number, "PRUNED", K.REASON_WORKER_DEATHS))
    return optuna.TrialPruned(f"this config killed its worker {deaths} times: not run a third time")


def worker_died(
    study: optuna.Study, number: int, evidence: dict[str, Any]
) -> optuna.trial.FrozenTrial | None:
    """A launcher saw trial ``number``'s worker die: FAIL it with how (``evidence``); None if it ended."""
    cause = evidence.get("likely_cause", "")
    return fail_trial(study, number, f"worker process died ({cause})", {K.WORKER_DEATH: evidence})


def oom_retry(ctx: TrialContext, tracker: Tracker) -> None:
    """An OOM that the --on-oom policy retries (shrink or cpu)."""
    tracker.log_metrics(ctx.run_id, {"oom_retries": float(len(ctx.records))})


def oom_pruned(ctx: TrialContext, tracker: Tracker) -> optuna.TrialPruned:
    """Out of memory and no retry left: pruned with every attempt's record."""
    last = ctx.records[-1].to_dict()
    attempts = [r.to_dict() for r in ctx.records]
    _attrs(
        ctx,
        {K.OOM: True, K.OOM_CONFIG: last, K.OOM_ATTEMPTS: attempts, K.PRUNED_REASON: K.REASON_OOM},
    )
    ctx.trial.set_constraint(MEMORY_CONSTRAINT, 1.0)
    tracker.log_params(
        ctx.run_id, {K.OOM_ERROR_PARAM: True, **{f"{K.OOM_PARAM_PREFIX}{k}": v for k, v in last.items()}}
    )
    tracker.log_json(ctx.run_id, {"final": last, "attempts": attempts}, K.OOM_ARTIFACT)
    tracker.end_trial(ctx.run_id, "FAILED", end_tags(ctx.number, "PRUNED", K.REASON_OOM, {K.OOM: "true"}))
    return optuna.TrialPruned(f"OOM at epoch {last['epoch']} step {last['step']}: {last['error_head']}")


def _head(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else ""


def fatal(ctx: TrialContext, tracker: Tracker, exc: BaseException) -> WorkerPoisoned:
    """A sticky CUDA error: the trial fails and its worker must stop."""
    ctx.trial.set_user_attr(K.FATAL_ERROR, _head(exc))
    tags = end_tags(ctx.number, "FAIL", "fatal CUDA error", {"fatal_cuda_error": "true"})
    tracker.end_trial(ctx.run_id, "FAILED", tags)
    return WorkerPoisoned(_head(exc))


def failed(ctx: TrialContext, tracker: Tracker, exc: BaseException) -> None:
    """Any other error: the trial fails (the caller re-raises; Optuna records FAIL)."""
    name = type(exc).__name__
    ctx.trial.set_user_attr(K.ERROR, f"{name}: {_head(exc)}" if str(exc) else name)
    tracker.end_trial(ctx.run_id, "FAILED", end_tags(ctx.number, "FAIL", name, {K.ERROR: name}))


def completed(
    ctx: TrialContext,
    tracker: Tracker,
    result: TrainResult,
    metric: str,
    measured: dict[str, Any],
    epochs_scheduled: int,
) -> float:
    """Training finished: the form it ended in (after OOM retries), measured peaks, best epoch."""
    if ctx.records:
        device = ctx.device.type if ctx.on_gpu else "cpu (fallback after OOM)"
        final = {K.FINAL_CONFIG: ctx.tcfg.model_dump(), K.FINAL_DEVICE: device}
        _attrs(ctx, {K.OOM_ATTEMPTS: [r.to_dict() for r in ctx.records], **final})
    if measured:
        _attrs(ctx, measured)
        tracker.log_metrics(ctx.run_id, {k: v for k, v in measured.items() if k != K.HIGH_MEMORY})
        if K.HIGH_MEMORY in measured:
            tracker.log_params(ctx.run_id, {K.HIGH_MEMORY: measured[K.HIGH_MEMORY]})
    ran = {K.BEST_EPOCH: result.best_epoch, K.EPOCHS_RUN: len(result.history)}
    _attrs(ctx, ran | {K.EPOCHS_SCHEDULED: epochs_scheduled, K.STOPPED_EARLY: result.stopped_early})
    ctx.trial.set_constraint(MEMORY_CONSTRAINT, 0.0)
    best = {f"best_val_{metric}": result.best_metric, K.BEST_EPOCH: float(result.best_epoch)}
    tracker.log_metrics(ctx.run_id, best)
    tracker.end_trial(ctx.run_id, "FINISHED", end_tags(ctx.number, "COMPLETE"))
    return result.best_metric


def taken_over(trial: optuna.Trial, tracker: Tracker) -> TrialTakenOver:
    """Another process finished the trial while this one ran it: nothing more is written on the trial; its
    MLflow run, if still open, ends KILLED."""
    state = trial_by_number(trial.study, trial.number).state.name
    run_id = tracker.open_trial_runs().get(trial.number)
    if run_id is not None:
        tracker.end_trial(run_id, "KILLED", end_tags(trial.number, state, "finished by another process"))
    return TrialTakenOver(trial.number, state)


def abandoned(study: optuna.Study, trial: optuna.trial.FrozenTrial, tracker: Tracker, why: str) -> bool:
    """A RUNNING trial whose process is gone: FAIL it now, enqueue one retry, fail its MLflow run."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    failed = fail_trial(study, trial.number, why)
    if failed is None:
        return False
    RetryHeartbeatStaleTrialCallback(max_retry=1)(study, failed)
    tags = end_tags(trial.number, "FAIL", "process gone", {K.ERROR: why})
    tracker.end_trial(failed.user_attrs.get(K.MLFLOW_RUN_ID), "FAILED", tags)
    return True


def close_stale_runs(study: optuna.Study, tracker: Tracker) -> int:
    """Give MLflow runs still RUNNING the status of their finished trial (FAIL -> FAILED, PRUNED -> KILLED,
    COMPLETE -> FINISHED): trials failed by heartbeat, by a dead worker or by Ctrl-C; returns how many."""
    status: dict[TrialState, RunStatus] = {
        TrialState.FAIL: "FAILED",
        TrialState.PRUNED: "KILLED",
        TrialState.COMPLETE: "FINISHED",
    }
    trials = {t.number: t for t in study.get_trials(deepcopy=False, states=tuple(status))}
    closed = 0
    for number, run_id in tracker.open_trial_runs().items():
        trial = trials.get(number)
        if trial is not None:
            reason = trial.user_attrs.get(K.PRUNED_REASON) if trial.state == TrialState.PRUNED else None
            tracker.end_trial(run_id, status[trial.state], end_tags(number, trial.state.name, reason))
            closed += 1
    return closed
