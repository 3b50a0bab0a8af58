"""ReDSM5-format data: post-grouped seeded splits, pair tokenization, dirty-row checks (reading and
validating the CSVs: ``hpo.train.redsm5``, re-exported here).

Agent-independent: an agent turns annotation rows into ``PairExample``s; everything here works on those.
torch is imported lazily (only ``encode_pairs`` needs it) so importing this module stays cheap.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hpo.errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch

from hpo.train.redsm5 import (  # re-exported: agents, scripts and tests read them here
    ANNOTATION_COLUMNS,
    ANNOTATIONS_FILE,
    DSM5_SYMPTOMS,
    POST_COLUMNS,
    POSTS_FILE,
    read_redsm5,
    short_list,
    warn_once,
)

__all__ = [
    "ANNOTATIONS_FILE",
    "ANNOTATION_COLUMNS",
    "DSM5_SYMPTOMS",
    "POSTS_FILE",
    "POST_COLUMNS",
    "PairExample",
    "Splits",
    "clean_splits",
    "encode_pairs",
    "grouped_split",
    "read_redsm5",
    "warn_once",
]


@dataclass(frozen=True)
class PairExample:
    """One (text_a, text_b) -> label example, with the ids needed for grouping and error analysis."""

    text_a: str
    text_b: str
    label: int
    post_id: str
    sentence_id: str
    symptom: str


@dataclass(frozen=True)
class Splits:
    """Train / validation / test examples; no post has sentences in two splits."""

    train: list[PairExample]
    val: list[PairExample]
    test: list[PairExample]

    def sizes(self) -> dict[str, int]:
        """Number of examples per split."""
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def get(self, split: str) -> list[PairExample]:
        """The examples of ``split`` ("train", "val" or "test")."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"unknown split '{split}': use train, val or test")
        examples: list[PairExample] = getattr(self, split)
        return examples


def grouped_split(
    examples: Sequence[PairExample], seed: int, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
) -> Splits:
    """Split ``examples`` into train/val/test by post_id (no post in two splits), deterministically per seed.

    Each split gets at least one post; fewer than three posts is a DataError.
    """
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(
            f"split fractions {fractions} are invalid", "give three positive numbers summing to 1"
        )
    post_ids = sorted({ex.post_id for ex in examples})
    n = len(post_ids)
    if n < 3:
        raise DataError(
            f"too few posts for a train/val/test split: got {n}, need at least 3",
            "use a larger dataset (posts are never shared between splits)",
        )
    random.Random(seed).shuffle(post_ids)
    n_val = max(1, round(n * fractions[1]))
    n_test = max(1, round(n * fractions[2]))
    n_train = n - n_val - n_test
    if n_train < 1:  # only reachable with tiny n and large val/test fractions
        n_val, n_test, n_train = 1, 1, n - 2
    val_ids = set(post_ids[n_train : n_train + n_val])
    test_ids = set(post_ids[n_train + n_val :])
    train = [ex for ex in examples if ex.post_id not in val_ids and ex.post_id not in test_ids]
    val = [ex for ex in examples if ex.post_id in val_ids]
    test = [ex for ex in examples if ex.post_id in test_ids]
    return Splits(train=train, val=val, test=test)


def encode_pairs(
    tokenizer: Any, examples: Sequence[PairExample], max_length: int, padding: str = "longest"
) -> dict[str, torch.Tensor]:
    """Tokenize (text_a, text_b) pairs, truncated to ``max_length`` tokens and padded (on the right) to the
    longest pair (``padding="longest"``; batches are cut further, hpo.train.batching) or to ``max_length``.

    Returns input_ids, attention_mask, token_type_ids (when the tokenizer makes them) and labels (long).
    """
    import torch

    if not examples:
        raise DataError("no examples to encode", "check that the split is not empty")
    encoded = tokenizer(
        [ex.text_a for ex in examples],
        [ex.text_b for ex in examples],
        truncation=True,
        max_length=max_length,
        padding=padding,
        return_tensors="pt",
    )
    batch = {key: encoded[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in encoded}
    batch["labels"] = torch.tensor([ex.label for ex in examples], dtype=torch.long)
    return batch


def _dirty(examples: Sequence[PairExample]) -> tuple[list[PairExample], list[PairExample]]:
    """Examples with an empty text; examples whose (text_a, text_b) pair also appears with another label."""
    empty = [ex for ex in examples if not ex.text_a.strip() or not ex.text_b.strip()]
    labels: dict[tuple[str, str], set[int]] = {}
    for ex in examples:
        labels.setdefault((ex.text_a, ex.text_b.strip().lower()), set()).add(ex.label)
    clash = [
        ex for ex in examples if ex.text_b.strip() and len(labels[(ex.text_a, ex.text_b.strip().lower())]) > 1
    ]
    return empty, clash


def clean_splits(splits: Splits, allow_dirty: bool) -> tuple[Splits, int]:
    """Refuse (DataError) or, with ``allow_dirty``, drop examples with an empty text and contradictory
    duplicates (the same pair with opposite labels); returns the splits and the number of examples dropped."""
    empty, clash = _dirty(splits.train + splits.val + splits.test)
    if not empty and not clash:
        return splits, 0
    ids = [f"{ex.post_id}/{ex.sentence_id}" for ex in empty + clash]
    what = f"{len(empty)} example(s) with empty text and {len(clash)} contradictory duplicate(s) (same text, "
    if not allow_dirty:
        raise DataError(
            what + f"opposite labels) in the data, e.g. post/sentence {short_list(ids, 3)}",
            "fix or remove those rows, or pass --allow-dirty-data to drop them with a warning",
        )
    bad = {id(ex) for ex in empty + clash}
    kept = Splits(
        *([ex for ex in split if id(ex) not in bad] for split in (splits.train, splits.val, splits.test))
    )
    if not kept.train or not kept.val:
        raise DataError(what + "opposite labels) leave a split empty", "fix the data rows")
    return kept, len(bad)
