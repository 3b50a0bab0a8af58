"""Final evaluation of the best trial on the held-out test split (used only here, never during search)."""

from __future__ import annotations

import io
import sys
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial

from hpo.agents import get_agent
from hpo.config.catalog import get_spec
from hpo.config.study import StudyConfig, TrialConfig
from hpo.device.gpu import resolve_device
from hpo.errors import StorageError
from hpo.progress import Progress
from hpo.train.batching import make_loader
from hpo.train.data import clean_splits
from hpo.train.loop import evaluate, train
from hpo.train.losses import make_loss
from hpo.train.model import build_model, load_tokenizer
from hpo.trial import keys as K


def evaluate_best(
    cfg: StudyConfig, study: optuna.Study, trial: FrozenTrial, progress: Progress | None = None
) -> dict[str, Any]:
    """Retrain ``trial``'s config and score it on the test split.

    The re-run is the trial's own training: same seed, same form (``final_config`` after an OOM retry), the
    same schedule over the epochs the trial scheduled, stopped after its best epoch, so its weights are
    the trial's at that epoch (on CPU bit for bit; dropout on CUDA statistically). Progress (hpo.progress)
    draws on stderr when it is a terminal: stdout keeps only the result (``--json``).
    """
    progress = progress or (Progress(stream=sys.stderr) if sys.stderr.isatty() else Progress(io.StringIO()))
    try:
        return _evaluate(cfg, study, trial, progress)
    finally:
        progress.close()  # a failed run does not leave the live display (and a hidden cursor) behind


def _evaluate(
    cfg: StudyConfig, study: optuna.Study, trial: FrozenTrial, progress: Progress
) -> dict[str, Any]:
    raw = trial.user_attrs.get(K.FINAL_CONFIG) or trial.user_attrs.get(K.TRIAL_CONFIG)
    if not raw:
        raise StorageError(
            f"trial {trial.number} of study '{study.study_name}' has no stored {K.TRIAL_CONFIG}",
            "it was not run by hpo tune; evaluate a study that hpo tune ran",
        )
    tcfg = TrialConfig.model_validate(raw)
    agent = get_agent(cfg.agent, cfg)
    splits, _ = clean_splits(agent.load_splits(cfg.data_dir, cfg.seed), cfg.allow_dirty_data)
    device = resolve_device(cfg.device)
    if device.type != "cuda":
        tcfg = tcfg.model_copy(update={"precision": "fp32"})
    spec = get_spec(tcfg.model)
    tok = load_tokenizer(spec)
    train_ex = splits.train[: cfg.max_train_examples] if cfg.max_train_examples else splits.train
    how = "max_length" if cfg.padding == "max_length" else "longest"
    train_data, _ = agent.encode(tok, train_ex, tcfg.max_length, how)
    val_data, _ = agent.encode(tok, splits.val, tcfg.max_length, how)
    test_data, _ = agent.encode(tok, splits.test, tcfg.max_length, how)
    model = build_model(
        spec,
        num_labels=agent.num_labels,
        dropout=tcfg.dropout,
        grad_checkpointing=tcfg.grad_checkpointing,
        frozen_layers=tcfg.frozen_layers,
        lora_r=tcfg.lora_r,
        lora_alpha=tcfg.lora_alpha,
        lora_dropout=tcfg.lora_dropout,
        lora_targets=tcfg.lora_targets,
        quant=tcfg.quant,
        seed=cfg.seed,
        auto_class=agent.head.auto_class,
    )
    scheduled = int(trial.user_attrs.get(K.EPOCHS_SCHEDULED, cfg.epochs))
    epochs = int(trial.user_attrs.get(K.BEST_EPOCH, scheduled - 1)) + 1
    n_steps, n = -(-len(train_data["input_ids"]) // tcfg.batch_size), trial.number
    progress.trial_started(n, f"retraining for {epochs} epoch(s), then scoring the test split")
    result = train(
        model,
        tcfg,
        train_data,
        val_data,
        score=agent.scorer(splits.val, val_data),
        num_labels=agent.num_labels,
        epochs=scheduled,
        patience=scheduled + 1,
        device=device,
        seed=cfg.seed,
        eval_batch_size=cfg.eval_batch_size,
        stop_after=epochs,
        dynamic_padding=cfg.padding == "dynamic",
        group_by_length=cfg.group_by_length,
        head=agent.head,
        on_step=lambda epoch, step: progress.step(n, epoch, epochs, step, n_steps),
        on_epoch=lambda r: progress.epoch(n, r.epoch, epochs, {"val": r.val_metric, "loss": r.train_loss}),
    )
    loader = make_loader(
        test_data,
        cfg.eval_batch_size,
        shuffle=False,
        seed=cfg.seed,
        targets=agent.head.targets,
        sort_by_length=True,
    )
    loss_fn = make_loss("ce", label_smoothing=0.0, focal_gamma=0.0, weight=None)
    with torch.no_grad():
        test_loss, gold, pred = evaluate(
            model, loader, loss_fn, device, tcfg.precision, cfg.padding == "dynamic", agent.head
        )
    scorer = agent.scorer(splits.test, test_data)
    out = {
        "trial": trial.number,
        "epochs": epochs,
        "epochs_scheduled": scheduled,
        "optimizer_steps": result.optimizer_steps,
        f"val_{agent.metric_name}": result.history[-1].val_metric,
        **{f"test_{name}": value for name, value in scorer.metrics(gold, pred).items()},
        "test_loss": test_loss,
        f"test_majority_baseline_{agent.metric_name}": agent.majority_baseline(splits, "test"),
        "test_examples": len(splits.test),
    }
    progress.trial_finished(n, "evaluated", None)
    return out
