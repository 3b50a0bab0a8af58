"""The training loop, top to bottom: AMP, gradient accumulation, scheduler, clipping, early stopping, metrics.

The loop knows nothing about Optuna or MLflow: the objective passes ``on_epoch`` (report/prune/log) and
``on_step`` (fault injection, simulated GPU) callbacks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from hpo.config.study import TrialConfig
from hpo.train.batching import in_split_order, make_loader, to_device
from hpo.train.heads import CLASSIFICATION, Head
from hpo.train.losses import ClassificationLoss, class_weights, make_loss
from hpo.train.optim import build_optimizer, optimizer_groups

AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class EpochResult:
    """Metrics of one finished epoch."""

    epoch: int
    train_loss: float
    val_loss: float
    val_metric: float
    seconds: float
    optimizer_steps: int
    learning_rate: float


@dataclass
class TrainResult:
    """What a finished training run produced."""

    best_metric: float
    best_epoch: int
    history: list[EpochResult] = field(default_factory=list)
    stopped_early: bool = False
    optimizer_steps: int = 0


StepHook = Callable[[int, int], None]
EpochHook = Callable[[EpochResult], None]


def scheduler_name(kind: str) -> str:
    return {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[kind]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: ClassificationLoss,
    device: torch.device,
    precision: str,
    dynamic_padding: bool = True,
    head: Head = CLASSIFICATION,
) -> tuple[float, list[Any], list[Any]]:
    """Loss over the whole split (sum of terms / sum of weights), the first target and the head's prediction
    of every batch row (for a span head: every window), in split order (the loader may run the longest rows
    first: ``make_loader(sort_by_length=True)``)."""
    model.eval()
    num, den, gold_all, preds_all = 0.0, 0.0, [], []
    for tensors in loader:
        batch = to_device(loader, tensors, device, dynamic_padding)
        targets = {k: batch.pop(k) for k in head.targets}
        with _autocast(device, precision):
            outputs = model(**batch)
        terms, weights = head.terms(loss_fn, outputs, targets, batch["attention_mask"])
        num, den = num + float(terms.sum()), den + float(weights.sum())
        gold_all.extend(targets[head.targets[0]].tolist())
        preds_all.extend(head.predictions(outputs))
    gold, pred = in_split_order(loader, gold_all), in_split_order(loader, preds_all)
    return num / den if den else 0.0, gold, pred


def release_cached_blocks(device: torch.device) -> None:
    """Return the caching allocator's free blocks to the driver (CUDA only), between training and evaluation.

    Blocks cached for training's activations cannot serve evaluation's larger no_grad batch and stay reserved
    beside the new ones: measured on an H200, a Llama-2-7B LoRA trial (batch 1, length 2048) peaked at
    39.3 GiB with them and 28.7 GiB without (tests/data/gpu/h200_lora*.csv). The estimate assumes this.
    """
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _autocast(device: torch.device, precision: str) -> Any:
    if device.type == "cuda" and precision in AMP_DTYPES:
        return torch.autocast(device_type="cuda", dtype=AMP_DTYPES[precision])
    return nullcontext()


def windows(loader: DataLoader, accum: int) -> Iterator[list[list[torch.Tensor]]]:
    """The epoch's micro-batches grouped into accumulation windows (the last one may be shorter)."""
    window: list[list[torch.Tensor]] = []
    for tensors in loader:
        window.append(tensors)
        if len(window) == accum:
            yield window
            window = []
    if window:
        yield window


def train(
    model: nn.Module,
    cfg: TrialConfig,
    train_data: dict[str, torch.Tensor],
    val_data: dict[str, torch.Tensor],
    *,
    score: Callable[[list[Any], list[Any]], float],
    num_labels: int,
    epochs: int,
    patience: int,
    device: torch.device,
    seed: int,
    eval_batch_size: int = 64,
    on_step: StepHook | None = None,
    on_epoch: EpochHook | None = None,
    stop_after: int | None = None,
    dynamic_padding: bool = True,
    group_by_length: bool = False,
    head: Head = CLASSIFICATION,
) -> TrainResult:
    """Fine-tune ``model`` on ``train_data``; returns the best validation metric over epochs.

    The schedule spans ``epochs``; ``stop_after`` ends training after that many epochs (a re-run that stops
    at a trial's best epoch keeps the trial's schedule, hence its weights). Batches are cut to their longest
    member unless ``dynamic_padding`` is off; ``group_by_length`` orders each epoch by length within
    accumulation windows (hpo.train.batching). ``head`` (hpo.train.heads) names the targets, computes the
    loss terms and the predictions ``score`` reads.
    """
    from transformers import get_scheduler

    torch.manual_seed(seed)
    if cfg.precision == "bf16_pure":
        model.to(dtype=torch.bfloat16)
    model.to(device)
    group = cfg.effective_batch if group_by_length else None
    train_loader = make_loader(
        train_data, cfg.batch_size, shuffle=True, seed=seed, group_by_length=group, targets=head.targets
    )
    val_loader = make_loader(
        val_data, eval_batch_size, shuffle=False, seed=seed, targets=head.targets, sort_by_length=True
    )

    weight = (
        class_weights(train_data["labels"].tolist(), num_labels).to(device) if cfg.class_weighting else None
    )
    loss_fn = make_loss(
        cfg.loss, label_smoothing=cfg.label_smoothing, focal_gamma=cfg.focal_gamma, weight=weight
    )
    optimizer = build_optimizer(cfg.optimizer, optimizer_groups(model, cfg.weight_decay), cfg.learning_rate)
    steps_per_epoch = math.ceil(len(train_loader) / cfg.grad_accum)
    total_steps = steps_per_epoch * epochs
    scheduler = get_scheduler(
        scheduler_name(cfg.scheduler),
        optimizer,
        num_warmup_steps=math.ceil(cfg.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and cfg.precision == "fp16")
    result = TrainResult(best_metric=-math.inf, best_epoch=-1)
    bad_epochs = 0
    labels_at = train_loader.keys.index(head.targets[0])  # type: ignore[attr-defined]

    for epoch in range(epochs if stop_after is None else min(epochs, stop_after)):
        model.train()
        start, loss_num, loss_den, step = time.perf_counter(), 0.0, 0.0, 0
        optimizer.zero_grad(set_to_none=True)
        for window in windows(train_loader, cfg.grad_accum):
            # every micro-batch's loss is divided by its window's weight total, not by its own: the
            # window's gradient is that of one batch of all its examples, however it is split
            total = sum(loss_fn.terms_weight(t[labels_at].to(device)) for t in window)
            for tensors in window:
                if on_step is not None:
                    on_step(epoch, step)
                batch = to_device(train_loader, tensors, device, dynamic_padding)
                targets = {k: batch.pop(k) for k in head.targets}
                with _autocast(device, cfg.precision):
                    outputs = model(**batch)
                terms, weights = head.terms(loss_fn, outputs, targets, batch["attention_mask"])
                loss_num, loss_den = loss_num + float(terms.detach().sum()), loss_den + float(weights.sum())
                scaler.scale(terms.sum() / total).backward()
                step += 1
                del batch, targets, outputs, terms, weights
            if cfg.max_grad_norm > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            result.optimizer_steps += 1

        release_cached_blocks(device)
        val_loss, gold, pred = evaluate(
            model, val_loader, loss_fn, device, cfg.precision, dynamic_padding, head
        )
        release_cached_blocks(device)  # training's next epoch starts from the state its first one did
        epoch_result = EpochResult(
            epoch=epoch,
            train_loss=loss_num / loss_den if loss_den else 0.0,
            val_loss=val_loss,
            val_metric=score(gold, pred),
            seconds=time.perf_counter() - start,
            optimizer_steps=result.optimizer_steps,
            learning_rate=float(scheduler.get_last_lr()[0]),
        )
        result.history.append(epoch_result)
        if epoch_result.val_metric > result.best_metric:
            result.best_metric, result.best_epoch, bad_epochs = epoch_result.val_metric, epoch, 0
        else:
            bad_epochs += 1
        if on_epoch is not None:
            on_epoch(epoch_result)  # may raise optuna.TrialPruned
        if bad_epochs >= patience:
            result.stopped_early = True
            break
    return result
