"""Model construction: HF sequence classifier with dropout, frozen layers and checkpointing applied."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from hpo.config.catalog import ModelSpec
from hpo.errors import ModelError

# Every dropout knob a supported architecture exposes in its config: the sampled dropout sets all of them.
DROPOUT_KEYS = (
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "classifier_dropout",
    "pooler_dropout",
    "dropout",
    "attention_dropout",
    "seq_classif_dropout",
    "summary_last_dropout",
)


def _quiet_transformers() -> None:
    for name in ("transformers.modeling_utils", "transformers.configuration_utils", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers always ships it
        pass


def _load_error(spec: ModelSpec, what: str, exc: Exception) -> ModelError:
    return ModelError(
        f"cannot load the {what} of '{spec.name}' from {spec.load_path()}: {str(exc).splitlines()[0][:160]}",
        "check the model id/path (hub models need network or a filled HF cache)",
    )


def load_tokenizer(spec: ModelSpec) -> Any:
    """The model's tokenizer (offline for packaged and config-built models)."""
    from transformers import AutoTokenizer

    _quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.load_path())
    except (OSError, ValueError) as exc:
        raise _load_error(spec, "tokenizer", exc) from exc
    if tokenizer.pad_token is None:  # decoders (Llama, Mistral): pad with EOS, as their classifiers expect
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _model_config(spec: ModelSpec, num_labels: int, dropout: float) -> Any:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(spec.load_path(), num_labels=num_labels)
    except (OSError, ValueError) as exc:
        raise _load_error(spec, "config", exc) from exc
    for key in DROPOUT_KEYS:
        if hasattr(config, key):
            setattr(config, key, dropout)
    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = getattr(config, "eos_token_id", None) or 0
    return config


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of transformer blocks of a sequence-classification model, whatever its family."""
    base = getattr(model, "base_model", model)
    for path in ("encoder.layer", "layers", "transformer.layer", "encoder.layers", "h"):
        obj: Any = base
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList):
            return obj
    raise ModelError(
        f"cannot find the transformer layers of {type(model).__name__}",
        "freezing layers is supported for BERT-like encoders and LLaMA-like decoders",
    )


def freeze_layers(model: nn.Module, n_layers: int) -> int:
    """Freeze the embeddings and the first ``n_layers`` blocks; returns how many parameters were frozen."""
    if n_layers <= 0:
        return 0
    layers = encoder_layers(model)
    if n_layers >= len(layers):
        raise ModelError(f"cannot freeze {n_layers} of {len(layers)} layers", "freeze fewer layers")
    frozen = 0
    base = getattr(model, "base_model", model)
    encoder = getattr(base, "encoder", None)
    modules: list[nn.Module] = [
        m
        for m in (getattr(base, "embeddings", None), getattr(base, "embed_tokens", None))
        if isinstance(m, nn.Module)
    ]
    # DeBERTa's relative-position embeddings (and their LayerNorm) sit beside the layers: freeze them too
    modules += [
        m
        for m in (getattr(encoder, "rel_embeddings", None), getattr(encoder, "LayerNorm", None))
        if isinstance(m, nn.Module)
    ]
    modules.extend(layers[:n_layers])
    for module in modules:
        for param in module.parameters():
            if param.requires_grad:
                param.requires_grad_(False)
                frozen += param.numel()
    return frozen


def build_model(
    spec: ModelSpec,
    *,
    num_labels: int,
    dropout: float,
    grad_checkpointing: bool,
    frozen_layers: int,
    seed: int,
    lora_r: int = 0,
    lora_alpha: int = 16,
    lora_dropout: float = 0.0,
    lora_targets: str = "q_v",
    quant: str = "none",
    auto_class: str = "AutoModelForSequenceClassification",
) -> nn.Module:
    """Build the classifier: pretrained weights (hub/package/local) or random ones (config-only models);
    with ``lora_r`` > 0, peft LoRA adapters on the ``lora_targets`` module set (hpo.memory.budget), base
    frozen (only the adapters and the head train); ``quant`` 4bit/8bit loads the base through bitsandbytes
    (QLoRA, CUDA only: hpo.train.quant). ``auto_class``: the agent's head (hpo.train.heads)."""
    import transformers

    auto = getattr(transformers, auto_class)
    _quiet_transformers()
    config = _model_config(spec, num_labels, dropout)
    torch.manual_seed(seed)  # the fresh classification head (and config-built weights) depend on the seed
    try:
        if quant != "none":
            from hpo.train.quant import load_quantized

            model = load_quantized(spec, config, quant, lora_r, auto_class)
        elif spec.source == "config":
            model = auto.from_config(config)
        else:
            model = auto.from_pretrained(spec.load_path(), config=config)
    except (OSError, ValueError) as exc:
        raise _load_error(spec, "weights", exc) from exc
    if quant != "none":  # frozen k-bit base, fp32 norms/embeddings/head, checkpointing as the trial says
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=grad_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
        grad_checkpointing = False  # enabled just now
    if grad_checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise ModelError(
                f"{type(model).__name__} does not support gradient checkpointing",
                "disable grad_checkpointing in the search space for this model",
            )
        enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:  # pragma: no cover - transformers 4.x
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    freeze_layers(model, frozen_layers)
    if lora_r <= 0:
        return model
    task = LORA_TASKS[auto_class]
    return add_lora(model, spec, lora_r, lora_alpha, dropout=lora_dropout, targets=lora_targets, task=task)


# peft's task type per head: it keeps the fresh head (classifier / qa_outputs) trainable beside the adapters
LORA_TASKS = {
    "AutoModelForSequenceClassification": "SEQ_CLS",
    "AutoModelForQuestionAnswering": "QUESTION_ANS",
}


def add_lora(
    model: nn.Module,
    spec: ModelSpec,
    rank: int,
    alpha: int,
    *,
    dropout: float = 0.0,
    targets: str = "q_v",
    task: str = "SEQ_CLS",
) -> nn.Module:
    """Wrap ``model`` with peft LoRA adapters on the modules of the ``targets`` set in every layer (the
    estimator's MemoryRequest.lora_targets), with peft's dropout on their input."""
    from peft import LoraConfig, get_peft_model

    from hpo.config.catalog import LORA_TARGET_SETS, lora_target_names

    # bitsandbytes' Linear4bit/Linear8bitLt subclass nn.Linear
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    if targets not in LORA_TARGET_SETS:
        raise ModelError(f"unknown LoRA target set '{targets}'", f"use one of {sorted(LORA_TARGET_SETS)}")
    modules = [t for t in lora_target_names(spec, LORA_TARGET_SETS[targets]) if t in names]
    if not modules:
        raise ModelError(f"'{spec.name}' has no {targets} projections for LoRA adapters", "set lora_r to 0")
    config = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=modules, task_type=task
    )
    return get_peft_model(model, config)


def trainable_parameters(model: nn.Module) -> int:
    """Number of parameters that receive gradients."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
