"""Models for the GPU study without a download: hub catalog entries materialized with random weights.

A card machine may have no network, so ``scripts/gpu_study.py`` writes each hub model it needs (BERT-style
catalog entries: bert-base-uncased, bert-large-uncased, ...) as a local directory: ``config.json`` with the
catalog's dimensions (vocabulary included, so the memory is the real model's), the tokenizer of the shipped
tiny BERT (``hpo/assets/tiny-bert``: its ids stay below every vocabulary) and random weights from the config.
Memory and speed are the real architecture's; the metric is meaningless (random weights, toy vocabulary).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from hpo.config.catalog import get_spec
from hpo.paths import PACKAGE_DIR

TOKENIZER_DIR = PACKAGE_DIR / "assets" / "tiny-bert"
TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json")
BERT_LIKE = ("bert",)


def needs_materializing(model: str) -> bool:
    """Hub models need a download; config-built (``source: config``) and package models do not."""
    return get_spec(model).source == "hub"


def config_json(model: str) -> dict[str, object]:
    """An HF ``config.json`` with the catalog dimensions of ``model`` (BERT architectures only)."""
    spec = get_spec(model)
    if spec.arch not in BERT_LIKE:
        raise ValueError(f"{model}: only {', '.join(BERT_LIKE)} models can be materialized, not {spec.arch}")
    return {
        "model_type": spec.arch,
        "architectures": ["BertForSequenceClassification"],
        "hidden_size": spec.hidden_size,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads,
        "intermediate_size": spec.intermediate_size,
        "vocab_size": spec.vocab_size,
        "max_position_embeddings": spec.max_position_embeddings,
        "type_vocab_size": spec.type_vocab_size or 2,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "initializer_range": 0.02,
    }


def materialize(model: str, root: Path) -> Path:
    """``root/<model>``: config, tokenizer and random weights (kept when already written); returns it."""
    target = root / model
    if (target / "model.safetensors").is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    (target / "config.json").write_text(json.dumps(config_json(model), indent=1))
    for name in TOKENIZER_FILES:
        shutil.copyfile(TOKENIZER_DIR / name, target / name)
    import torch
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.from_pretrained(target)).save_pretrained(target)
    return target


def local_models(models: list[str], root: Path) -> dict[str, str]:
    """Catalog name -> what ``hpo tune --models`` gets (a materialized directory for hub models)."""
    return {m: str(materialize(m, root)) if needs_materializing(m) else m for m in models}
