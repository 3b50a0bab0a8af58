"""4-bit NF4 / 8-bit base weights through bitsandbytes (QLoRA): CUDA only, bitsandbytes imported lazily.

The search space proposes a quantisation only where it can run (``quant_unavailable`` is None); a config that
forces one elsewhere is refused with the reason and the fix (ConfigError: exit 2), never a crash mid-trial.
Loading follows the QLoRA recipe: NF4 with double quantisation and bf16 compute, or LLM.int8; the caller then
runs ``peft.prepare_model_for_kbit_training`` and attaches the LoRA adapters (hpo.train.model).
"""

from __future__ import annotations

import importlib.util
import tempfile
from typing import Any

import torch

from hpo.config.catalog import ModelSpec
from hpo.errors import ConfigError

QUANT_FIX = "install the extra (pip install 'hpo[qlora]') and run on a CUDA GPU, or set space.quant to [none]"


def bitsandbytes_installed() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def quant_unavailable(on_cuda: bool, installed: bool | None = None) -> str | None:
    """Why 4/8-bit base weights cannot run here (None: they can); ``installed``: whether bitsandbytes is
    (None: look)."""
    if not on_cuda:
        return "4/8-bit base weights (bitsandbytes) need a CUDA device; this run is on the CPU"
    if not (bitsandbytes_installed() if installed is None else installed):
        return "4/8-bit base weights need bitsandbytes, which is not installed"
    return None


def bnb_config(quant: str) -> Any:
    """transformers' BitsAndBytesConfig for ``quant``: QLoRA's NF4 + double quantisation + bf16 compute,
    or 8-bit (LLM.int8)."""
    from transformers import BitsAndBytesConfig

    if quant == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    if quant == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    raise ConfigError(f"unknown quantisation '{quant}'", "use none, 4bit or 8bit")


def load_quantized(
    spec: ModelSpec,
    config: Any,
    quant: str,
    lora_r: int,
    auto_class: str = "AutoModelForSequenceClassification",
) -> Any:
    """The classifier of ``spec`` with ``quant`` base weights on the current CUDA device (ConfigError where
    that cannot run). A config-only model (random weights) is saved once to a temporary folder first:
    transformers quantizes while loading."""
    import transformers

    auto = getattr(transformers, auto_class)
    reason = quant_unavailable(torch.cuda.is_available())
    if reason is not None:
        raise ConfigError(reason, QUANT_FIX)
    if lora_r <= 0:
        raise ConfigError("4/8-bit base weights train LoRA adapters only (lora_r > 0)", "set lora_r")
    kwargs = {"quantization_config": bnb_config(quant), "device_map": {"": torch.cuda.current_device()}}
    if spec.source != "config":
        return auto.from_pretrained(spec.load_path(), config=config, **kwargs)
    with tempfile.TemporaryDirectory(prefix="hpo-quant-") as tmp:
        auto.from_config(config).save_pretrained(tmp)
        return auto.from_pretrained(tmp, config=config, **kwargs)
