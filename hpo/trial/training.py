"""One training attempt of a trial: its encoded data (cached per process), a fresh model, the loop with the
step hook (fault injection, simulated card, progress) and the epoch hook (metrics, Optuna pruning)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch

from hpo.agents.base import Agent
from hpo.config.catalog import ModelSpec
from hpo.config.study import StudyConfig
from hpo.device.faults import SimulatedGpu
from hpo.lifecycle import check_stop
from hpo.progress import Progress
from hpo.tracking.tracker import Tracker
from hpo.train.batching import padded_length
from hpo.train.data import Splits
from hpo.train.loop import EpochResult, TrainResult, train
from hpo.train.model import build_model, load_tokenizer
from hpo.train.tokenized import encode_cached
from hpo.trial import objectives, outcomes
from hpo.trial.context import TrialContext
from hpo.trial.sizing import Sizer

Tensors = dict[str, torch.Tensor]
# (tokenizer, examples, max_length, padding, cache_dir) -> (tensors, tokenized here): an agent's ``encode``
Encoder = Callable[[Any, Any, int, str, Path | None], tuple[Tensors, bool]]


@dataclass
class EncodedData:
    """The study's splits tokenized per (model, max_length), kept for the life of the process."""

    splits: Splits
    max_train_examples: int | None = None
    padding: str = "dynamic"  # StudyConfig.padding
    tokenizers: dict[str, Any] = field(default_factory=dict)
    cache_dir: Path | None = None  # tokenized splits on disk, shared by processes (hpo.train.tokenized)
    tokenized: int = 0  # splits this process tokenized itself (the others came from the cache)
    encode: Encoder = encode_cached  # the agent's (hpo.agents.base.Agent.encode)
    _encoded: dict[tuple[str, int, str], Tensors] = field(default_factory=dict)

    def get(self, spec: ModelSpec, max_length: int) -> tuple[Tensors, Tensors]:
        """(train, validation) tensors for ``spec``'s tokenizer at ``max_length``."""
        if spec.name not in self.tokenizers:
            self.tokenizers[spec.name] = load_tokenizer(spec)
        tok = self.tokenizers[spec.name]
        limit = self.max_train_examples
        train_ex = self.splits.train[:limit] if limit else self.splits.train
        out = []
        for split, examples in (("train", train_ex), ("val", self.splits.val)):
            key = (spec.name, max_length, split)
            if key not in self._encoded:
                how = "max_length" if self.padding == "max_length" else "longest"
                self._encoded[key], fresh = self.encode(tok, examples, max_length, how, self.cache_dir)
                self.tokenized += fresh
            out.append(self._encoded[key])
        return out[0], out[1]

    def longest(self, spec: ModelSpec, max_length: int) -> int:
        """The widest batch training or evaluation can build for ``spec`` at ``max_length`` (tokenizes once,
        before any model is loaded): what the memory estimate must cover."""
        if self.padding == "max_length":
            return max_length
        train, val = self.get(spec, max_length)
        widest = max(int(train["input_ids"].shape[1]), int(val["input_ids"].shape[1]))
        return padded_length(widest, max_length)


@dataclass
class Trainer:
    """Trains ``ctx.tcfg`` on ``ctx.device``; raises what training raises (OOM, TrialPruned, ...)."""

    cfg: StudyConfig
    agent: Agent
    data: EncodedData
    tracker: Tracker
    progress: Progress
    sizer: Sizer

    def __call__(self, ctx: TrialContext) -> TrainResult:
        train_data, val_data = self.data.get(ctx.spec, ctx.tcfg.max_length)
        model = build_model(
            ctx.spec,
            num_labels=self.agent.num_labels,
            dropout=ctx.tcfg.dropout,
            grad_checkpointing=ctx.tcfg.grad_checkpointing,
            frozen_layers=ctx.tcfg.frozen_layers,
            lora_r=ctx.tcfg.lora_r,
            lora_alpha=ctx.tcfg.lora_alpha,
            lora_dropout=ctx.tcfg.lora_dropout,
            lora_targets=ctx.tcfg.lora_targets,
            quant=ctx.tcfg.quant,
            seed=self.cfg.seed,
            auto_class=self.agent.head.auto_class,
        )
        memory = self.sizer.memory
        simulated = (
            SimulatedGpu(memory.gpu_bytes, self.sizer.simulated_peak(ctx.spec, ctx.tcfg, ctx.budget))
            if ctx.on_gpu and memory.simulated and memory.gpu_bytes is not None
            else None
        )
        n_steps = -(-len(train_data["input_ids"]) // ctx.tcfg.batch_size)
        # on a (real or simulated) card: the evaluation batch the estimate covers (hpo.memory.phases)
        eval_batch = self.sizer.eval_batch(ctx.spec, ctx.tcfg) if ctx.on_gpu else self.cfg.eval_batch_size
        metric, epochs = self.agent.metric_name, self.cfg.epochs
        multi_objective, began = objectives.multi(self.cfg), time.monotonic()

        def on_step(epoch: int, step: int) -> None:
            check_stop()  # a SIGINT/SIGTERM whose exception a finalizer swallowed
            ctx.position.epoch, ctx.position.step = epoch, step
            ctx.injector.check(epoch, step)
            if simulated is not None:
                simulated.check(epoch, step)
            self.progress.step(ctx.number, epoch, epochs, step, n_steps)

        def on_epoch(r: EpochResult) -> None:
            outcomes.epoch_done(ctx, self.tracker, r, metric)
            self.progress.epoch(ctx.number, r.epoch, epochs, {metric: r.val_metric, "loss": r.train_loss})
            if multi_objective:  # Optuna refuses report()/should_prune() there: no per-epoch pruning
                return
            ctx.trial.report(r.val_metric, r.epoch)
            if ctx.trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {r.epoch} ({metric}={r.val_metric:.4f})")

        try:
            result = train(
                model,
                ctx.tcfg,
                train_data,
                val_data,
                score=self.agent.scorer(self.data.splits.val, val_data),
                num_labels=self.agent.num_labels,
                epochs=epochs,
                patience=self.cfg.patience,
                device=ctx.device,
                seed=self.cfg.seed,
                eval_batch_size=eval_batch,
                on_step=on_step,
                on_epoch=on_epoch,
                dynamic_padding=self.cfg.padding == "dynamic",
                group_by_length=self.cfg.group_by_length,
                head=self.agent.head,
            )
            ctx.train_time_s = time.monotonic() - began
            if "latency" in (self.cfg.objectives or ()):
                inputs = ("input_ids", "attention_mask", "token_type_ids")
                ctx.latency_ms = objectives.latency_ms(model, val_data, ctx.device, inputs)
            return result
        finally:
            del model
