"""The model the meta-device trace runs: the classifier built from its config (never its weights), with
layers frozen and LoRA adapters attached the way hpo trains (peft's layout: A/B linears, fp32, dropout on the
adapter input, head trainable)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from hpo.config.catalog import ModelSpec, lora_target_names
from hpo.memory.budget import MemoryRequest
from hpo.train.model import freeze_layers

_META = torch.device("meta")


class _LoraLinear(nn.Module):
    """Frozen base linear plus a trainable rank-r update, as peft's lora.Linear: fp32 adapters, the input cast
    to their dtype, then ``nn.Dropout`` (``Identity`` at 0: peft's choice, so no mask and no copy)."""

    def __init__(self, base: nn.Linear, r: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.base = base
        self.lora_A = nn.Linear(base.in_features, r, bias=False, device=base.weight.device)
        self.lora_B = nn.Linear(r, base.out_features, bias=False, device=base.weight.device)
        self.drop: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        update = self.lora_B(self.lora_A(self.drop(x.to(self.lora_A.weight.dtype))))
        return self.base(x) + update.to(x.dtype) * 2.0


def hf_config(spec: ModelSpec, req: MemoryRequest, layers: int | None = None) -> Any:
    """The transformers config of ``spec`` (local config.json, or built from the catalog dimensions)."""
    from transformers import AutoConfig

    if spec.source in ("package", "config", "local"):
        cfg = AutoConfig.from_pretrained(spec.load_path())
    else:
        names = ["hidden_size", "num_heads", "intermediate_size", "vocab_size", "max_position_embeddings"]
        dims = {name.replace("num_heads", "num_attention_heads"): getattr(spec, name) for name in names}
        dims.update(num_hidden_layers=spec.num_layers, tie_word_embeddings=spec.tie_embeddings)
        if spec.family == "decoder":
            dims["num_key_value_heads"] = spec.kv_heads
        else:
            dims["type_vocab_size"] = max(spec.type_vocab_size, 1)
        if spec.arch == "electra":
            dims["embedding_size"] = spec.emb_size
        cfg = AutoConfig.for_model(spec.arch, **dims, **dict(spec.extra.get("hf_config") or {}))
    cfg.num_labels, cfg.use_cache = req.num_labels, False  # no KV cache while training a classifier
    cfg.num_hidden_layers = layers or cfg.num_hidden_layers
    cfg.pad_token_id = 0 if getattr(cfg, "pad_token_id", None) is None else cfg.pad_token_id
    return cfg


def model_from_config(
    spec: ModelSpec, req: MemoryRequest, layers: int | None = None, device: Any = _META
) -> Any:
    """The classifier of ``spec`` built from its config (no weights are read: the trace's twin of
    hpo.train.model.build_model, which loads them), frozen/LoRA as requested."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    cfg = hf_config(spec, req, layers)
    Auto = AutoModelForCausalLM if req.head == "causal_lm" else AutoModelForSequenceClassification
    with torch.device(device):
        try:
            model = Auto.from_config(cfg, attn_implementation="eager" if req.attn_impl == "eager" else "sdpa")
        except (ValueError, ImportError):  # e.g. DeBERTa has no SDPA path: it always runs eager attention
            model = Auto.from_config(cfg, attn_implementation="eager")
    if req.precision == "bf16_pure":
        model.to(torch.bfloat16)
    prepare_model(model, spec, req)
    return model


def prepare_model(model: nn.Module, spec: ModelSpec, req: MemoryRequest) -> None:
    """Freeze layers (and embeddings) and attach LoRA adapters, the way hpo trains."""
    if req.lora_r > 0:
        targets = set(lora_target_names(spec, req.lora_targets))
        for name, module in list(model.named_modules()):
            for child, sub in list(module.named_children()):
                head = f"{name}.{child}".startswith(("classifier", "score"))
                if isinstance(sub, nn.Linear) and child in targets and not head:
                    setattr(module, child, _LoraLinear(sub, req.lora_r, req.lora_dropout))
        for name, p in model.named_parameters():
            p.requires_grad_("lora_" in name or name.startswith(("classifier", "score")))
    freeze_layers(model, req.frozen_layers)  # as training freezes: embeddings and the first layers
