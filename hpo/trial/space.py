"""Search space: samples a TrialConfig under model-aware constraints.

Bounds come from the study's SpaceConfig, narrowed by the GPU profile (configs/gpus/*.yaml) for the sampled
model's parameter count and by the model's own limits (position embeddings, number of layers). Only values
that change training are sampled: label smoothing only with the label-smoothed loss, focal gamma only with
the focal loss, precision only on CUDA (CPU trains in fp32), the LoRA fields (rank, alpha, dropout, target
modules) only for decoders (which train LoRA adapters; encoders are fine-tuned whole and sample frozen layers
instead), and 4/8-bit base weights only where the GPU profile's tier allows them for the model's size, on
CUDA with bitsandbytes (elsewhere a space that forces them is a ConfigError; hpo.train.quant).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import optuna

from hpo.config.catalog import ModelSpec, get_spec
from hpo.config.study import SpaceConfig, TrialConfig
from hpo.device.gpu import GpuProfile
from hpo.errors import ConfigError
from hpo.train.quant import QUANT_FIX, quant_unavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpaceContext:
    """What sampling depends on besides the trial: models, device, GPU profile, bounds."""

    models: tuple[str, ...]
    space: SpaceConfig
    on_cuda: bool
    profile: GpuProfile | None = None
    bf16_supported: bool = True
    eight_bit: bool = False  # bitsandbytes and CUDA: adamw_8bit and 4/8-bit base weights can run


def optimizers(ctx: SpaceContext) -> list[str]:
    """The space's optimizers that can run here (adamw_8bit needs bitsandbytes and CUDA)."""
    return [o for o in ctx.space.optimizer if o != "adamw_8bit" or ctx.eight_bit] or ["adamw"]


def frozen_layers_cap(specs: list[ModelSpec], space: SpaceConfig) -> int:
    """Largest number of frozen layers valid for every model (at least one layer stays trainable)."""
    return max(0, min([space.frozen_layers_max, *[s.num_layers - 1 for s in specs]]))


def model_bounds(spec: ModelSpec, ctx: SpaceContext) -> tuple[list[int], list[int], list[int]]:
    """Allowed (batch sizes, accumulation steps, max lengths) for one model on this GPU profile."""
    space = ctx.space
    max_pos = spec.max_position_embeddings - (2 if spec.arch in ("roberta", "xlm-roberta") else 0)
    batch, accum = list(space.batch_size), list(space.grad_accum)
    length = [n for n in space.max_length if n <= max_pos]
    if ctx.profile is not None:
        b = ctx.profile.bounds(spec.params)
        batch = [n for n in batch if n <= b.max_batch_size]
        accum = [n for n in accum if n <= b.max_grad_accum]
        length = [n for n in length if n <= b.max_length]
    if not batch or not accum or not length:
        raise ConfigError(
            f"no batch size / accumulation / max length in the search space fits model '{spec.name}' "
            f"on GPU profile '{ctx.profile.name if ctx.profile else 'none'}'",
            "widen space.batch_size/grad_accum/max_length, use a bigger --gpu-memory or drop the model",
        )
    return batch, accum, length


def quant_choices(spec: ModelSpec, ctx: SpaceContext) -> list[str]:
    """The space's base-weight quantisations that can run for ``spec`` here (decoders only: the tier must
    allow them, on CUDA with bitsandbytes); empty when the space allows only impossible ones."""
    if spec.family != "decoder":
        return ["none"]
    tier = ctx.profile.bounds(spec.params).quant if ctx.profile is not None else ("none",)
    return [q for q in ctx.space.quant if q == "none" or (q in tier and ctx.eight_bit)]


def _check_quant(spec: ModelSpec, ctx: SpaceContext) -> None:
    if quant_choices(spec, ctx):
        return
    forced = "/".join(ctx.space.quant)
    reason = quant_unavailable(ctx.on_cuda, installed=ctx.eight_bit)  # eight_bit: CUDA + bitsandbytes
    if reason is None:  # it could run here, but not for this model size on this card
        name = ctx.profile.name if ctx.profile else "none"
        size = f"'{spec.name}' ({spec.params:,} params)"
        reason = f"GPU profile '{name}' allows no {forced} base weights for {size}"
    raise ConfigError(f"space.quant [{forced}] cannot run: {reason}", QUANT_FIX)


def _choice(trial: optuna.Trial, name: str, choices: list[int], full: list[int]) -> int:
    """A categorical whose choices may be narrowed per model.

    Optuna forbids a categorical's choices changing across trials, so a narrowed set gets its own name
    (``batch_size:8/16``); models with the same bounds share it, so TPE still learns across them.
    """
    if choices != full:
        name = f"{name}:{'/'.join(str(c) for c in choices)}"
    return int(trial.suggest_categorical(name, choices))


def validate(ctx: SpaceContext) -> None:
    """Fail fast (ConfigError/ModelError) on models or bounds that can never be sampled."""
    for model in ctx.models:
        model_bounds(get_spec(model), ctx)
        _check_quant(get_spec(model), ctx)
    if "adamw_8bit" in ctx.space.optimizer and not ctx.eight_bit:
        log.warning("adamw_8bit left out of the search space: it needs bitsandbytes and a CUDA device")


def sample(trial: optuna.Trial, ctx: SpaceContext) -> TrialConfig:
    """Sample one trial's hyperparameters."""
    s = ctx.space
    model = trial.suggest_categorical("model", list(ctx.models))
    spec = get_spec(model)
    batches, accums, lengths = model_bounds(spec, ctx)
    loss = trial.suggest_categorical("loss", list(s.loss))
    values: dict[str, object] = {
        "model": model,
        "learning_rate": trial.suggest_float("learning_rate", *s.learning_rate, log=True),
        "weight_decay": trial.suggest_float("weight_decay", *s.weight_decay),
        "batch_size": _choice(trial, "batch_size", batches, list(s.batch_size)),
        "grad_accum": _choice(trial, "grad_accum", accums, list(s.grad_accum)),
        "max_length": _choice(trial, "max_length", lengths, list(s.max_length)),
        "warmup_ratio": trial.suggest_float("warmup_ratio", *s.warmup_ratio),
        "scheduler": trial.suggest_categorical("scheduler", list(s.scheduler)),
        "dropout": trial.suggest_float("dropout", *s.dropout),
        "max_grad_norm": trial.suggest_categorical("max_grad_norm", list(s.max_grad_norm)),
        "loss": loss,
        "class_weighting": trial.suggest_categorical("class_weighting", list(s.class_weighting)),
        "grad_checkpointing": trial.suggest_categorical("grad_checkpointing", list(s.grad_checkpointing)),
    }
    if loss == "label_smoothing":
        values["label_smoothing"] = trial.suggest_float("label_smoothing", *s.label_smoothing)
    if loss == "focal":
        values["focal_gamma"] = trial.suggest_float("focal_gamma", *s.focal_gamma)
    opts = optimizers(ctx)  # one choice: not a parameter (studies without it keep their parameters)
    values["optimizer"] = trial.suggest_categorical("optimizer", opts) if len(opts) > 1 else opts[0]
    if spec.family == "decoder":  # LoRA on a frozen base: frozen layers would change nothing
        values["lora_r"] = trial.suggest_categorical("lora_r", list(s.lora_r))
        values["lora_alpha"] = trial.suggest_categorical("lora_alpha", list(s.lora_alpha))
        values.update(_lora_extras(trial, spec, ctx))
    else:
        encoders = [sp for sp in map(get_spec, ctx.models) if sp.family != "decoder"]
        cap = frozen_layers_cap(encoders, s)
        values["frozen_layers"] = trial.suggest_int("frozen_layers", 0, cap) if cap > 0 else 0
    if ctx.on_cuda:
        precisions = [p for p in s.precision if p not in ("bf16", "bf16_pure") or ctx.bf16_supported]
        name, kbit = "precision", values.get("quant", "none") != "none"
        if kbit and "bf16_pure" in precisions:  # k-bit bases keep fp32 norms/head (peft): no bf16 cast
            precisions = [p for p in precisions if p != "bf16_pure"] or ["fp32"]
            name = "precision:" + "/".join(precisions)  # narrowed choices: their own parameter
        values["precision"] = trial.suggest_categorical(name, precisions or ["fp32"])
    else:
        values["precision"] = "fp32"
    return TrialConfig.model_validate(values)


def _lora_extras(trial: optuna.Trial, spec: ModelSpec, ctx: SpaceContext) -> dict[str, object]:
    """LoRA dropout, target-module set and base quantisation; a field with one possible value is not a
    parameter (studies made before it keep their parameters)."""
    s, out = ctx.space, dict[str, object]()
    lo, hi = s.lora_dropout
    out["lora_dropout"] = trial.suggest_float("lora_dropout", lo, hi) if hi > lo else lo
    targets = list(s.lora_targets)
    pick = trial.suggest_categorical("lora_targets", targets) if len(targets) > 1 else targets[0]
    out["lora_targets"] = pick
    quants = quant_choices(spec, ctx)
    name = "quant" if quants == list(s.quant) else "quant:" + "/".join(quants)  # narrowed: its own name
    out["quant"] = trial.suggest_categorical(name, quants) if len(quants) > 1 else quants[0]
    return out
