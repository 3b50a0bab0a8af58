"""Typed trial configuration: the search-space bounds (SpaceConfig) and one sampled trial (TrialConfig).

Re-exported by ``hpo.config.study``; kept apart so that each module stays one concept."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Precision = Literal["fp32", "fp16", "bf16", "bf16_pure"]
Scheduler = Literal["linear", "cosine", "constant"]
Loss = Literal["ce", "label_smoothing", "focal"]
Optimizer = Literal["adamw", "adafactor", "sgd", "adamw_8bit"]
LoraTargets = Literal["q_v", "qkvo", "all_linear"]  # module sets (hpo.config.catalog.LORA_TARGET_SETS)
Quant = Literal["none", "4bit", "8bit"]  # base weights: as loaded, 4-bit NF4 or 8-bit (bitsandbytes)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class SpaceConfig(_Strict):
    """Search-space bounds. Model-size and GPU limits (configs/gpus/*.yaml) narrow them further."""

    learning_rate: tuple[float, float] = (1e-5, 1e-4)
    weight_decay: tuple[float, float] = (0.0, 0.1)
    batch_size: list[int] = [8, 16, 32, 64]
    grad_accum: list[int] = [1, 2, 4, 8]
    max_length: list[int] = [128, 256, 384, 512]
    warmup_ratio: tuple[float, float] = (0.0, 0.2)
    scheduler: list[Scheduler] = ["linear", "cosine", "constant"]
    dropout: tuple[float, float] = (0.0, 0.3)
    max_grad_norm: list[float] = [0.0, 0.5, 1.0, 5.0]
    loss: list[Loss] = ["ce", "label_smoothing", "focal"]
    label_smoothing: tuple[float, float] = (0.05, 0.2)
    focal_gamma: tuple[float, float] = (1.0, 3.0)
    class_weighting: list[bool] = [False, True]
    grad_checkpointing: list[bool] = [False, True]
    precision: list[Precision] = ["fp32", "fp16", "bf16"]
    optimizer: list[Optimizer] = ["adamw"]  # adamw_8bit only where bitsandbytes and CUDA exist
    frozen_layers_max: int = Field(4, ge=0)
    lora_r: list[int] = [8, 16, 32]  # decoders train LoRA adapters (peft) on the attention's q/v projections
    lora_alpha: list[int] = [16, 32]
    lora_dropout: tuple[float, float] = (0.0, 0.1)  # peft's dropout on the adapters' input
    lora_targets: list[LoraTargets] = ["q_v", "all_linear"]
    # only where the GPU profile's tier allows it for the model size, on CUDA with bitsandbytes installed
    quant: list[Quant] = ["none", "4bit", "8bit"]

    @field_validator(
        "learning_rate",
        "weight_decay",
        "warmup_ratio",
        "dropout",
        "label_smoothing",
        "focal_gamma",
        "lora_dropout",
    )
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] > v[1]:
            raise ValueError(f"range {list(v)} has low > high")
        return v

    @field_validator(
        "batch_size",
        "grad_accum",
        "max_length",
        "scheduler",
        "loss",
        "precision",
        "max_grad_norm",
        "class_weighting",
        "grad_checkpointing",
        "lora_r",
        "lora_alpha",
        "lora_targets",
        "quant",
    )
    @classmethod
    def _non_empty(cls, v: list[Any]) -> list[Any]:
        if not v:
            raise ValueError("needs at least one choice")
        if any(isinstance(x, int) and not isinstance(x, bool) and x <= 0 for x in v):
            raise ValueError(f"sizes must be positive, got {v}")
        return v


class TrialConfig(_Strict):
    """One sampled trial: every field changes what is trained (tests prove it)."""

    model: str
    learning_rate: float
    weight_decay: float = 0.0
    batch_size: int = 16
    grad_accum: int = 1
    max_length: int = 128
    warmup_ratio: float = 0.0
    scheduler: Scheduler = "linear"
    dropout: float = 0.1
    max_grad_norm: float = 1.0
    loss: Loss = "ce"
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    class_weighting: bool = False
    grad_checkpointing: bool = False
    precision: Precision = "fp32"
    frozen_layers: int = 0
    optimizer: Optimizer = "adamw"
    lora_r: int = Field(0, ge=0)  # > 0: LoRA adapters of this rank (decoders); 0: full fine-tuning
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    lora_targets: LoraTargets = "q_v"
    quant: Quant = "none"  # 4bit/8bit: bitsandbytes base weights (QLoRA), decoders with LoRA on CUDA only

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.grad_accum

    @model_validator(mode="after")
    def _quant_needs_lora(self) -> TrialConfig:
        if self.quant != "none" and (self.lora_r == 0 or self.precision == "bf16_pure"):
            raise ValueError("4/8-bit base weights train LoRA adapters (lora_r > 0), not in bf16_pure")
        return self
