"""A trial's training attempts under its memory admission, and the ``--on-oom`` policy between them.

prune: an OOM ends the trial (pruned, recorded). shrink: retry with half the micro-batch and twice the
accumulation (same effective batch) down to batch 1. cpu: small models finish on the CPU in fp32 (a simulated
GPU counts as the GPU here). Every attempt frees what it held before the next starts or the reservation goes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import optuna
import torch

from hpo.config.catalog import ModelSpec
from hpo.config.study import OnOom, TrialConfig
from hpo.device.oom import (
    OomRecord,
    clear_exception_frames,
    cpu_fallback_allowed,
    error_head,
    free_memory,
    is_fatal_cuda_error,
    is_oom,
    measure_peak,
    memory_now,
    shrink,
)
from hpo.tracking.tracker import Tracker
from hpo.train.loop import TrainResult
from hpo.trial import outcomes
from hpo.trial.admission import (
    Admission,
    AdmissionTimeout,
    HostAdmission,
    NoRoom,
    admitted,
    no_host_admission,
)
from hpo.trial.context import TrialContext
from hpo.trial.sizing import Sizer
from hpo.units import gb


def next_attempt(
    policy: OnOom, tcfg: TrialConfig, spec: ModelSpec, on_gpu: bool
) -> tuple[TrialConfig, bool] | None:
    """The config of the next attempt after an OOM and whether it stays on the GPU; None: prune."""
    if policy == "shrink":
        smaller = shrink(tcfg)
        return (smaller, True) if smaller is not None else None
    # a 4/8-bit base needs CUDA (bitsandbytes): no CPU form trains the same model
    if policy == "cpu" and on_gpu and cpu_fallback_allowed(spec.params) and tcfg.quant == "none":
        return tcfg.model_copy(update={"precision": "fp32"}), False
    return None


@dataclass
class Attempts:
    """Runs ``train`` until it finishes, turning each way it can end into the trial's outcome."""

    train: Callable[[TrialContext], TrainResult]
    admission: Admission
    sizer: Sizer
    tracker: Tracker
    policy: OnOom
    elastic: bool
    host: HostAdmission = no_host_admission

    def run(self, ctx: TrialContext) -> TrainResult:
        while True:
            try:
                return self._attempt(ctx)
            except KeyboardInterrupt as exc:
                outcomes.interrupted(ctx, self.tracker, exc)
                raise
            except optuna.exceptions.UpdateFinishedTrialError:  # finished by another process: record nothing
                raise
            except NoRoom as exc:  # the other workers' own memory leaves it no room, ever
                raise outcomes.pruned_by_estimate(ctx, self.tracker, exc.message, 1.0) from None
            except AdmissionTimeout as exc:  # waited --admission-timeout for room
                raise outcomes.admission_timed_out(ctx, self.tracker, exc.message) from None
            except optuna.TrialPruned:
                outcomes.early_stopped(ctx, self.tracker)
                raise
            except Exception as exc:
                if is_oom(exc):
                    self._record_oom(ctx, exc)
                    clear_exception_frames(exc)
                    del exc
                    free_memory()
                    ctx.records[-1].cleaned_up(memory_now())  # what the cleanup gave back
                    if not self._retry(ctx):
                        raise outcomes.oom_pruned(ctx, self.tracker) from None
                    outcomes.oom_retry(ctx, self.tracker)
                    continue
                if is_fatal_cuda_error(exc):
                    raise outcomes.fatal(ctx, self.tracker, exc) from exc
                outcomes.failed(ctx, self.tracker, exc)
                raise

    def _attempt(self, ctx: TrialContext) -> TrainResult:
        with admitted(ctx, self.admission, self.sizer, self.tracker, elastic=self.elastic, host=self.host):
            try:
                return self.train(ctx)
            except BaseException as exc:
                clear_exception_frames(exc)  # drop the model/batches held by the traceback...
                raise
            finally:
                ctx.peak = measure_peak() if ctx.device.type == "cuda" else None  # before stats are reset
                free_memory()  # ...and return the memory before the reservation is released

    def _record_oom(self, ctx: TrialContext, exc: BaseException) -> None:
        on_cuda = ctx.device.type == "cuda"
        origin = self.sizer.record_oom(ctx.spec, ctx.tcfg, ctx.budget, error_head(exc, 2000), on_cuda)
        ctx.records.append(
            OomRecord.from_trial_config(
                ctx.tcfg,
                exc,
                estimated_peak_gb=gb(ctx.budget.device_total_bytes),
                measured_peak_gb=gb(ctx.peak.allocated_bytes) if ctx.peak else None,
                epoch=ctx.position.epoch,
                step=ctx.position.step,
                attempt=len(ctx.records),
                policy=self.policy,
                origin=origin,
            )
        )

    def _retry(self, ctx: TrialContext) -> bool:
        """Move ``ctx`` to the next attempt's form and device; False when the policy prunes (or a CPU
        fallback would not fit the host's free RAM)."""
        nxt = next_attempt(self.policy, ctx.tcfg, ctx.spec, ctx.on_gpu)
        if nxt is None:
            return False
        if not nxt[1] and not self.sizer.host_has_room(self.sizer.host_bytes(ctx.spec, nxt[0], False)):
            return False
        ctx.tcfg, stays = nxt
        if not stays:
            ctx.device, ctx.on_gpu = torch.device("cpu"), False
        ctx.budget = self.sizer.estimate(ctx.spec, ctx.tcfg)
        return True
