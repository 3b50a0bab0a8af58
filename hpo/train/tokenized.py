"""Tokenized splits on HF ``datasets``, cached on disk so every worker process and later run reuses them.

A split is built into a ``Dataset`` and tokenized with ``map`` once per (tokenizer, max_length, examples);
the result is saved under ``<output_dir>/cache/tokenized/<key>`` (written to a temporary folder and renamed,
under a file lock, so concurrent workers never read half a cache). Tensors are made from it per process:
padded to the split's longest pair (or to max_length with ``padding="max_length"``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from hpo.errors import CacheError
from hpo.train.data import PairExample, encode_pairs

log = logging.getLogger(__name__)

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


def load_from_disk(path: str) -> Any:
    """``datasets.load_from_disk`` (the package is optional: imported when a cache is used)."""
    from datasets import load_from_disk as load

    return load(path)


def _read(folder: Path, tokenizer: Any, rows: int, max_length: int, padding: str) -> dict[str, torch.Tensor]:
    """The entry's tensors; raises when it cannot be read or does not hold ``rows`` tokenized rows (an Arrow
    file cut at a record-batch boundary reads back without an error, but short)."""
    data = load_from_disk(str(folder))
    if len(data) != rows or not {"input_ids", "labels"} <= set(data.column_names):
        raise ValueError(f"holds {len(data)} rows with columns {data.column_names}, expected {rows} rows")
    return _tensors(tokenizer, data, max_length, padding)


def _culprit(folder: Path) -> Path:
    """The file of the entry that cannot be read (a JSON file that is not JSON, an Arrow file that does not
    read to its end), else the entry's folder."""
    import json

    import pyarrow as pa

    for path in sorted(folder.glob("*.json")):
        try:
            json.loads(path.read_text())
        except (OSError, ValueError):
            return path
    for path in sorted(folder.glob("*.arrow")):
        try:
            with pa.memory_map(str(path)) as source:
                pa.ipc.open_stream(source).read_all()
        except (OSError, pa.ArrowException):
            return path
    return folder


def _build(tokenizer: Any, examples: Sequence[PairExample], max_length: int, folder: Path) -> None:
    """Tokenize into a new temporary folder, then swap it in: a reader never sees half an entry, and an old
    (corrupt) entry is renamed aside before it is removed (a process that has it open keeps its files)."""
    tag = f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
    tmp, old = folder.with_name(f"{folder.name}.{tag}.tmp"), folder.with_name(f"{folder.name}.{tag}.old")
    try:
        _tokenize(tokenizer, examples, max_length).save_to_disk(str(tmp))
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def encode_cached(
    tokenizer: Any,
    examples: Sequence[PairExample],
    max_length: int,
    padding: str = "longest",
    cache_dir: Path | None = None,
) -> tuple[dict[str, torch.Tensor], bool]:
    """(tensors, whether this call tokenized): from the on-disk cache when it holds this split, else
    tokenized now (and saved there). Without ``cache_dir``, or without the ``datasets`` package (a GPU device
    image, scripts/wheelhouse.py): ``encode_pairs`` (no datasets, no disk).

    The cache is derived data: an entry that cannot be read is deleted and rebuilt once (one warning naming
    the file); if the rebuilt entry cannot be read either, :class:`CacheError` names it."""
    if cache_dir is None or importlib.util.find_spec("datasets") is None:
        return encode_pairs(tokenizer, examples, max_length, padding), True
    folder = Path(cache_dir) / "tokenized" / cache_key(tokenizer, examples, max_length)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        tokenized = not folder.is_dir()
        if tokenized:
            _build(tokenizer, examples, max_length, folder)
        try:
            return _read(folder, tokenizer, len(examples), max_length, padding), tokenized
        except Exception as exc:
            if tokenized:  # built just now: there is nothing to gain from building it again
                raise _unreadable(folder, exc) from exc
            log.warning(
                "tokenization cache %s cannot be read (%s): deleting and rebuilding it",
                _culprit(folder),
                _head(exc),
            )
        _build(tokenizer, examples, max_length, folder)
        try:
            return _read(folder, tokenizer, len(examples), max_length, padding), True
        except Exception as exc:
            raise _unreadable(folder, exc) from exc


def _head(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


def _unreadable(folder: Path, exc: BaseException) -> CacheError:
    return CacheError(
        f"tokenization cache entry {_culprit(folder)} cannot be read even after a rebuild ({_head(exc)})",
        f"check the disk under {folder.parent} (space, permissions, a full or failing filesystem); "
        f"delete {folder.parent} to start the cache afresh",
    )


def cached_file(path: Path, build: Callable[[], Any]) -> tuple[Any, bool]:
    """(value, whether this call built it) of a ``torch.save`` cache file, under its file lock: loaded when
    readable, else built, written to a temporary file and renamed. An unreadable file is deleted and rebuilt
    once (one warning naming it); a rebuilt one that still cannot be read is a CacheError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.is_file():
            try:
                return torch.load(path), False
            except Exception as exc:
                log.warning("cache file %s cannot be read (%s): deleting and rebuilding it", path, _head(exc))
                path.unlink(missing_ok=True)
        value = build()
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        torch.save(value, tmp)
        os.replace(tmp, path)
        try:
            torch.load(path)
        except Exception as exc:
            raise CacheError(
                f"cache file {path} cannot be read even after a rebuild ({_head(exc)})",
                f"check the disk under {path.parent}; delete that folder to start the cache afresh",
            ) from None
    return value, True
