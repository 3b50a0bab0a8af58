"""Tokenized splits on HF ``datasets``, cached on disk so every worker process and later run reuses them.

A split is built into a ``Dataset`` and tokenized with ``map`` once per (tokenizer, max_length, examples);
the result is saved under ``<output_dir>/cache/tokenized/<key>`` (written to a temporary folder and renamed,
under a file lock, so concurrent workers never read half a cache). Tensors are made from it per process:
padded to the split's longest pair (or to max_length with ``padding="max_length"``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from hpo.train.data import PairExample, encode_pairs

COLUMNS = ("input_ids", "attention_mask", "token_type_ids")


def cache_key(tokenizer: Any, examples: Sequence[PairExample], max_length: int) -> str:
    """Names the tokenization of ``examples``: the tokenizer (class, vocabulary, path), max_length, texts."""
    h = hashlib.sha256()
    name = getattr(tokenizer, "name_or_path", "")
    h.update(f"{type(tokenizer).__name__}|{name}|{len(tokenizer)}|{max_length}".encode())
    for ex in examples:
        h.update(f"\x1f{ex.text_a}\x1e{ex.text_b}\x1d{ex.label}".encode())
    return h.hexdigest()[:24]


def _tokenize(tokenizer: Any, examples: Sequence[PairExample], max_length: int) -> Any:
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    data = Dataset.from_dict(
        {
            "text_a": [e.text_a for e in examples],
            "text_b": [e.text_b for e in examples],
            "labels": [e.label for e in examples],
        }
    )

    def tokenize(batch: dict[str, list[Any]]) -> Any:
        return tokenizer(batch["text_a"], batch["text_b"], truncation=True, max_length=max_length)

    return data.map(tokenize, batched=True, remove_columns=["text_a", "text_b"], load_from_cache_file=False)


def _tensors(tokenizer: Any, data: Any, max_length: int, padding: str) -> dict[str, torch.Tensor]:
    features = {k: data[k] for k in COLUMNS if k in data.column_names}
    padded = tokenizer.pad(features, padding=padding, max_length=max_length, return_tensors="pt")
    out = {k: padded[k] for k in COLUMNS if k in padded}
    out["labels"] = torch.tensor(data["labels"], dtype=torch.long)
    return out


def encode_cached(
    tokenizer: Any,
    examples: Sequence[PairExample],
    max_length: int,
    padding: str = "longest",
    cache_dir: Path | None = None,
) -> tuple[dict[str, torch.Tensor], bool]:
    """(tensors, whether this call tokenized): from the on-disk cache when it holds this split, else
    tokenized now (and saved there). Without ``cache_dir``, or without the ``datasets`` package (a GPU device
    image, scripts/wheelhouse.py): ``encode_pairs`` (no datasets, no disk)."""
    if cache_dir is None or importlib.util.find_spec("datasets") is None:
        return encode_pairs(tokenizer, examples, max_length, padding), True
    from datasets import load_from_disk

    folder = Path(cache_dir) / "tokenized" / cache_key(tokenizer, examples, max_length)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        tokenized = not folder.is_dir()
        if tokenized:
            tmp = folder.with_name(f"{folder.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
            try:
                _tokenize(tokenizer, examples, max_length).save_to_disk(str(tmp))
                os.replace(tmp, folder)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        data = load_from_disk(str(folder))
    return _tensors(tokenizer, data, max_length, padding), tokenized
