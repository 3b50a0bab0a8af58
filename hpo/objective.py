"""The Optuna objective: sample -> estimate / prune -> train -> report, with OOM handling.

Trial user attrs written here (read by `hpo trials`, `hpo best`, `hpo oom`):
  trial_config, estimated_peak_gb, estimate_method, mlflow_run_id, device, pruned_reason
  ("memory_estimate" | "early_stop" | "oom"), oom, oom_config, oom_attempts, measured_peak_gb,
  measured_reserved_gb, measured_device_gb, nvml_process_gb, high_memory, best_epoch, epochs_run,
  stopped_early, final_config / final_device (after shrink or cpu fallback), error, fatal_error, and with a
  memory ledger (``--par``) admission_wait_s, admitted_at, released_at, and when a lighter equivalent form
  ran (hpo.elastic) elastic_form, run_config, run_estimated_peak_gb.
An OOM or an over-budget config is also marked infeasible with ``trial.set_constraint`` so TPE never ranks it
as promising, whatever it reported before failing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch

from hpo.agents.base import Agent
from hpo.config import StudyConfig, TrialConfig
from hpo.elastic import describe, lighter_forms
from hpo.faults import FaultInjector, FaultPlan, SimulatedGpu
from hpo.ledger import LedgerTooLarge
from hpo.memory.catalog import ModelSpec, get_spec
from hpo.memory.estimate import Budget
from hpo.oom import (
    OomRecord,
    PeakMemory,
    clear_exception_frames,
    cpu_fallback_allowed,
    free_memory,
    is_fatal_cuda_error,
    is_oom,
    measure_peak,
    shrink,
)
from hpo.progress import Progress
from hpo.sizing import GB, Sizer
from hpo.space import SpaceContext, sample
from hpo.tracking import Tracker
from hpo.train.data import Splits, encode_pairs
from hpo.train.loop import EpochResult, TrainResult, train
from hpo.train.model import build_model, load_tokenizer

# (device totals of the trial's forms, sampled first; trial number) -> holds room, yields the form's index
Admission = Callable[[Sequence[int], int], contextlib.AbstractContextManager[int]]


class WorkerPoisoned(Exception):
    """A fatal CUDA error (device-side assert, illegal access): this process must not run another trial."""


def _no_admission(sizes: Sequence[int], trial: int) -> contextlib.AbstractContextManager[int]:
    return contextlib.nullcontext(0)


@dataclass
class _Position:
    epoch: int | None = None
    step: int | None = None


@dataclass
class Objective:
    """Callable objective for ``study.optimize``; one instance per process."""

    cfg: StudyConfig
    agent: Agent
    splits: Splits
    tracker: Tracker
    progress: Progress
    device: torch.device
    space: SpaceContext
    sizer: Sizer
    faults: FaultPlan | None = None
    admission: Admission = _no_admission
    poisoned: bool = False
    last_trial_id: int = -1
    on_start: Callable[[optuna.Trial], None] | None = None
    tokenizers: dict[str, Any] = field(default_factory=dict)
    _encoded: dict[tuple[str, int, str], dict[str, torch.Tensor]] = field(default_factory=dict)
    _pos: _Position = field(default_factory=_Position)

    # ---- data ---------------------------------------------------------------------------------------------
    def _data(
        self, spec: ModelSpec, max_length: int
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        if spec.name not in self.tokenizers:
            self.tokenizers[spec.name] = load_tokenizer(spec)
        tok = self.tokenizers[spec.name]
        train_ex = (
            self.splits.train[: self.cfg.max_train_examples]
            if self.cfg.max_train_examples
            else self.splits.train
        )
        out = []
        for split, examples in (("train", train_ex), ("val", self.splits.val)):
            key = (spec.name, max_length, split)
            if key not in self._encoded:
                self._encoded[key] = encode_pairs(tok, examples, max_length)
            out.append(self._encoded[key])
        return out[0], out[1]

    # ---- one training attempt -----------------------------------------------------------------------------
    def _train(
        self,
        trial: optuna.Trial,
        tcfg: TrialConfig,
        spec: ModelSpec,
        device: torch.device,
        budget: Budget,
        run_id: str | None,
        injector: FaultInjector,
        on_gpu: bool,
    ) -> TrainResult:
        train_data, val_data = self._data(spec, tcfg.max_length)
        model = build_model(
            spec,
            num_labels=self.agent.num_labels,
            dropout=tcfg.dropout,
            grad_checkpointing=tcfg.grad_checkpointing,
            frozen_layers=tcfg.frozen_layers,
            seed=self.cfg.seed,
        )
        simulated = (
            SimulatedGpu(self.sizer.memory.gpu_bytes, self.sizer.simulated_peak(spec, tcfg, budget))
            if on_gpu and self.sizer.memory.simulated and self.sizer.memory.gpu_bytes is not None
            else None
        )
        n_steps = -(-len(train_data["labels"]) // tcfg.batch_size)

        def on_step(epoch: int, step: int) -> None:
            self._pos.epoch, self._pos.step = epoch, step
            injector.check(epoch, step)
            if simulated is not None:
                simulated.check(epoch, step)
            self.progress.step(trial.number, epoch, self.cfg.epochs, step, n_steps)

        def on_epoch(r: EpochResult) -> None:
            metrics = {
                "val_" + self.agent.metric_name: r.val_metric,
                "val_loss": r.val_loss,
                "train_loss": r.train_loss,
                "learning_rate": r.learning_rate,
                "epoch_seconds": r.seconds,
            }
            self.tracker.log_metrics(run_id, metrics, step=r.epoch)
            self.progress.epoch(
                trial.number,
                r.epoch,
                self.cfg.epochs,
                {self.agent.metric_name: r.val_metric, "loss": r.train_loss},
            )
            trial.report(r.val_metric, r.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(
                    f"pruned at epoch {r.epoch} ({self.agent.metric_name}={r.val_metric:.4f})"
                )

        try:
            return train(
                model,
                tcfg,
                train_data,
                val_data,
                score=self.agent.score,
                num_labels=self.agent.num_labels,
                epochs=self.cfg.epochs,
                patience=self.cfg.patience,
                device=device,
                seed=self.cfg.seed,
                eval_batch_size=self.cfg.eval_batch_size,
                on_step=on_step,
                on_epoch=on_epoch,
            )
        finally:
            del model

    # ---- outcomes -----------------------------------------------------------------------------------------
    def _record_peak(
        self,
        trial: optuna.Trial,
        run_id: str | None,
        spec: ModelSpec,
        tcfg: TrialConfig,
        budget: Budget,
        peak: PeakMemory | None,
    ) -> None:
        """Measured peaks (CUDA only) on the trial and its MLflow run; feeds the calibration."""
        if peak is None:
            return
        measured = self.sizer.measured(spec, tcfg, budget, peak)
        for key, value in measured.items():
            trial.set_user_attr(key, value)
        self.tracker.log_metrics(run_id, {k: v for k, v in measured.items() if k != "high_memory"})
        if "high_memory" in measured:
            self.tracker.log_params(run_id, {"high_memory": measured["high_memory"]})

    def _estimate_pruned(
        self, trial: optuna.Trial, run_id: str | None, reason: str, over_gb: float
    ) -> optuna.TrialPruned:
        trial.set_user_attr("pruned_reason", "memory_estimate")
        trial.set_constraint("memory", over_gb)
        self.tracker.end_trial(run_id, "KILLED", {"state": "PRUNED", "pruned_reason": "memory_estimate"})
        return optuna.TrialPruned(f"memory estimate: {reason}")

    @contextlib.contextmanager
    def _admitted(
        self,
        trial: optuna.Trial,
        run_id: str | None,
        spec: ModelSpec,
        tcfg: TrialConfig,
        budget: Budget,
        on_gpu: bool,
    ) -> Iterator[tuple[TrialConfig, Budget]]:
        """Hold the trial's memory admission; yields the form that got room (as sampled, or a lighter
        equivalent one: hpo.elastic) with its estimate. Records how long it waited, when it held the memory
        (user attrs ``admission_wait_s``, ``admitted_at``, ``released_at``; epoch seconds) and the form."""
        if self.admission is _no_admission:
            yield tcfg, budget
            return
        forms = [(tcfg, budget)]
        if self.cfg.elastic and on_gpu:
            lighter = [(f, self.sizer.estimate(spec, f)) for f in lighter_forms(tcfg)]
            forms += [(f, b) for f, b in lighter if b.device_total_bytes < budget.device_total_bytes]
        sizes = [b.device_total_bytes if on_gpu else 0 for _, b in forms]
        asked, admitted = time.time(), False
        try:
            with self.admission(sizes, trial.number) as k:
                admitted = True
                now = time.time()
                trial.set_user_attr("admission_wait_s", round(now - asked, 3))
                trial.set_user_attr("admitted_at", now)
                run_cfg, run_budget = forms[k]
                if k:
                    first = "elastic_form" not in trial.user_attrs  # MLflow params are write-once
                    form = describe(tcfg, run_cfg)
                    trial.set_user_attr("elastic_form", form)
                    trial.set_user_attr("run_config", run_cfg.model_dump())
                    trial.set_user_attr("run_estimated_peak_gb", round(run_budget.device_total_bytes / GB, 3))
                    # MLflow params are write-once: an OOM retry (--on-oom shrink) may admit another form,
                    # which only the user attrs follow
                    if first:
                        params = {"elastic_form": form, "run_batch_size": run_cfg.batch_size}
                        params |= {"run_grad_accum": run_cfg.grad_accum}
                        params |= {"run_grad_checkpointing": run_cfg.grad_checkpointing}
                        self.tracker.log_params(run_id, params)
                yield run_cfg, run_budget
        finally:
            if admitted:
                trial.set_user_attr("released_at", time.time())

    def _oom_pruned(
        self, trial: optuna.Trial, run_id: str | None, records: list[OomRecord]
    ) -> optuna.TrialPruned:
        last = records[-1]
        trial.set_user_attr("oom", True)
        trial.set_user_attr("oom_config", last.to_dict())
        trial.set_user_attr("oom_attempts", [r.to_dict() for r in records])
        trial.set_user_attr("pruned_reason", "oom")
        trial.set_constraint("memory", 1.0)
        self.tracker.log_params(
            run_id, {"oom_error": True, **{f"oom_{k}": v for k, v in last.to_dict().items()}}
        )
        self.tracker.log_json(
            run_id, {"final": last.to_dict(), "attempts": [r.to_dict() for r in records]}, "oom_config.json"
        )
        self.tracker.end_trial(run_id, "FAILED", {"oom": "true", "state": "PRUNED", "pruned_reason": "oom"})
        where = f"epoch {last.epoch} step {last.step}"
        return optuna.TrialPruned(f"OOM at {where}: {last.error_head}")

    def __call__(self, trial: optuna.Trial) -> float:
        self.last_trial_id = trial._trial_id
        if self.on_start is not None:
            self.on_start(trial)
        tcfg = sample(trial, self.space)
        spec = get_spec(tcfg.model)
        budget = self.sizer.estimate(spec, tcfg)
        trial.set_user_attr("trial_config", tcfg.model_dump())
        trial.set_user_attr("estimated_peak_gb", round(budget.device_total_bytes / GB, 3))
        trial.set_user_attr("estimate_method", budget.method)
        trial.set_user_attr("device", self.device.type)
        params = {
            **tcfg.model_dump(),
            "effective_batch": tcfg.effective_batch,
            "estimated_peak_gb": round(budget.device_total_bytes / GB, 3),
        }
        run_id = self.tracker.start_trial(trial.number, params)
        if run_id is not None:
            trial.set_user_attr("mlflow_run_id", run_id)
        self.progress.trial_started(trial.number, _summary(tcfg))

        reason = self.sizer.over_budget(spec, tcfg, budget)
        if reason is not None:
            over = (budget.device_total_bytes - self.sizer.memory.limit_bytes) / GB
            raise self._estimate_pruned(trial, run_id, reason, max(1e-6, over))

        device, records = self.device, list[OomRecord]()
        on_gpu = device.type == "cuda" or self.sizer.memory.simulated  # False after a cpu fallback
        injector = FaultInjector(self.faults, trial.number)  # once per trial: a retry must not re-fire it
        peak: PeakMemory | None = None
        while True:
            try:
                with self._admitted(trial, run_id, spec, tcfg, budget, on_gpu) as (tcfg, budget):
                    try:
                        result = self._train(trial, tcfg, spec, device, budget, run_id, injector, on_gpu)
                    except BaseException as exc:
                        clear_exception_frames(exc)  # drop the model/batches held by the traceback...
                        raise
                    finally:
                        peak = measure_peak() if device.type == "cuda" else None  # before stats are reset
                        free_memory()  # ...and return the memory before the reservation is released
                break
            except KeyboardInterrupt:  # Optuna marks the trial FAIL; leave no MLflow run RUNNING either
                self.tracker.end_trial(run_id, "KILLED", {"state": "FAIL", "error": "interrupted"})
                raise
            except LedgerTooLarge as exc:  # the other workers' own memory leaves it no room, ever
                raise self._estimate_pruned(trial, run_id, exc.message, 1.0) from None
            except optuna.TrialPruned:
                trial.set_user_attr("pruned_reason", "early_stop")
                trial.set_constraint("memory", 0.0)
                self.tracker.end_trial(run_id, "KILLED", {"state": "PRUNED", "pruned_reason": "early_stop"})
                raise
            except Exception as exc:
                if is_oom(exc):
                    records.append(
                        OomRecord.from_trial_config(
                            tcfg,
                            exc,
                            estimated_peak_gb=round(budget.device_total_bytes / GB, 3),
                            measured_peak_gb=round(peak.allocated_bytes / GB, 3) if peak else None,
                            epoch=self._pos.epoch,
                            step=self._pos.step,
                            attempt=len(records),
                            policy=self.cfg.on_oom,
                        )
                    )
                    clear_exception_frames(exc)
                    del exc
                    free_memory()
                    self.sizer.record_oom(spec, tcfg, budget)
                    nxt = self._after_oom(tcfg, spec, on_gpu)
                    if nxt is None:
                        raise self._oom_pruned(trial, run_id, records) from None
                    if nxt[1]:  # shrink: same device
                        tcfg = nxt[0]
                    else:  # cpu fallback
                        tcfg, device, on_gpu = nxt[0], torch.device("cpu"), False
                    budget = self.sizer.estimate(spec, tcfg)
                    self.tracker.log_metrics(run_id, {"oom_retries": float(len(records))})
                    continue
                if is_fatal_cuda_error(exc):
                    self.poisoned = True
                    trial.set_user_attr("fatal_error", str(exc).splitlines()[0][:300])
                    self.tracker.end_trial(run_id, "FAILED", {"state": "FAIL", "fatal_cuda_error": "true"})
                    raise WorkerPoisoned(str(exc).splitlines()[0][:300]) from exc
                trial.set_user_attr(
                    "error",
                    f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                    if str(exc)
                    else type(exc).__name__,
                )
                self.tracker.end_trial(run_id, "FAILED", {"state": "FAIL", "error": type(exc).__name__})
                raise

        if records:
            trial.set_user_attr("oom_attempts", [r.to_dict() for r in records])
            trial.set_user_attr("final_config", tcfg.model_dump())
            trial.set_user_attr("final_device", device.type if on_gpu else "cpu (fallback after OOM)")
        self._record_peak(trial, run_id, spec, tcfg, budget, peak)
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("epochs_run", len(result.history))
        trial.set_user_attr("stopped_early", result.stopped_early)
        trial.set_constraint("memory", 0.0)
        self.tracker.log_metrics(
            run_id,
            {
                f"best_val_{self.agent.metric_name}": result.best_metric,
                "best_epoch": float(result.best_epoch),
            },
        )
        self.tracker.end_trial(run_id, "FINISHED", {"state": "COMPLETE"})
        return result.best_metric

    def _after_oom(self, tcfg: TrialConfig, spec: ModelSpec, on_gpu: bool) -> tuple[TrialConfig, bool] | None:
        """The next attempt under the study's --on-oom policy as (config, still on the GPU), or None to prune.

        shrink: half the micro-batch, double the accumulation (same effective batch) down to batch 1.
        cpu: small models finish on the CPU in fp32 (a simulated GPU counts as the GPU here).
        """
        if self.cfg.on_oom == "shrink":
            smaller = shrink(tcfg)
            return (smaller, True) if smaller is not None else None
        if self.cfg.on_oom == "cpu" and on_gpu and cpu_fallback_allowed(spec.params):
            return tcfg.model_copy(update={"precision": "fp32"}), False
        return None


def _summary(cfg: TrialConfig) -> str:
    return (
        f"{cfg.model} bs={cfg.batch_size}x{cfg.grad_accum} len={cfg.max_length} lr={cfg.learning_rate:.2e} "
        f"{cfg.precision}{' ckpt' if cfg.grad_checkpointing else ''}"
    )
