"""The classify agent: text (or text pair) classification from any table, single-label or multi-label.

The data is a CSV, JSONL or Parquet file or a ``datasets.save_to_disk`` folder (``--data``), its columns named
by ``--text-col``, ``--text-pair-col``, ``--label-col``, ``--group-col``, ``--split-col`` (StudyConfig
``columns``). A label column of strings or ints is single-label multi-class: cross-entropy (or the trial's
loss choice), metrics macro-F1 (optimised) and accuracy. A list per row is multi-label: BCE-with-logits,
metrics macro-F1 (optimised) and micro-F1. Without ``--data`` it reads the shipped synthetic ticket sample.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from hpo.agents.classify_metrics import MULTI_LABEL, MultiLabelScorer, SingleLabelScorer, macro_f1
from hpo.agents.classify_metrics import multilabel_macro_f1 as ml_macro_f1
from hpo.agents.stratified import split_rows
from hpo.agents.table_rows import Row, Rows, read_rows
from hpo.agents.tabular import read_table
from hpo.config.columns import ColumnsConfig
from hpo.config.study import SpaceConfig, StudyConfig
from hpo.errors import ConfigError
from hpo.paths import PACKAGE_DIR, SAMPLE_DATA_DIR
from hpo.train.data import PairExample, Splits
from hpo.train.heads import CLASSIFICATION, Head, Tensors
from hpo.train.tokenized import cached_file

CLASSIFY_SAMPLE = PACKAGE_DIR / "data" / "classify" / "tickets.csv"
FEATURES = ("input_ids", "attention_mask", "token_type_ids")


def data_path(data_dir: Path) -> Path:
    """The file to read: ``data_dir``, or the shipped ticket sample when it is the default (ReDSM5) sample."""
    same = Path(data_dir).resolve() == SAMPLE_DATA_DIR.resolve()
    return CLASSIFY_SAMPLE if same else Path(data_dir)


class ClassifyAgent:
    """Classification of a table's text column into its label column's classes (one, or a set per row)."""

    name = "classify"
    metric_name = "macro_f1"

    def __init__(self, columns: ColumnsConfig | None = None) -> None:
        self.columns = columns or ColumnsConfig()
        self.num_labels = 2  # set by load_splits from the data
        self.names: tuple[str, ...] = ()
        self.multi_label = False
        self.head: Head = CLASSIFICATION
        self.baseline_name = "majority-class baseline"
        self.source: Path | None = None  # the data file or folder read

    def read(self, data_dir: Path) -> Rows:
        """The validated rows of the data; sets the mode, the label names and ``num_labels``."""
        self.source = data_path(data_dir)  # what the study fingerprint hashes (hpo.run.fingerprint)
        rows = read_rows(read_table(self.source), self.columns)
        self.names, self.multi_label, self.num_labels = rows.names, rows.multi_label, len(rows.names)
        self.head = MULTI_LABEL if rows.multi_label else CLASSIFICATION
        self.baseline_name = "per-label prior baseline" if rows.multi_label else "majority-class baseline"
        return rows

    def load_splits(self, data_dir: Path, seed: int) -> Splits:
        """Read and validate the data, return its train/val/test splits (split column, else seeded,
        stratified and grouped)."""
        rows = self.read(data_dir)
        parts = split_rows(rows, seed)
        return Splits(*([self.example(rows, row) for row in parts.get(s)] for s in ("train", "val", "test")))

    def example(self, rows: Rows, row: Row) -> PairExample:
        """A row as a PairExample: ``label`` is the class id, or for multi-label the bit set of its labels;
        a single text is in both text_a and text_b (encode reads text_a alone)."""
        label = sum(1 << i for i in row.labels) if rows.multi_label else row.labels[0]
        return PairExample(
            text_a=row.text,
            text_b=row.pair if row.pair is not None else row.text,
            label=label,
            post_id=row.group,
            sentence_id=rows.table.places[row.index],
            symptom="|".join(rows.names[i] for i in row.labels),
        )

    def check_space(self, space: SpaceConfig, tokenizers: dict[str, Any]) -> None:
        """Multi-label data cannot weight classes (each label is its own binary decision)."""
        if self.multi_label and True in space.class_weighting:
            raise ConfigError(
                "the classify agent cannot weight classes of multi-label data",
                "set space.class_weighting: [false] in the study YAML",
            )

    def encode(
        self,
        tokenizer: Any,
        examples: Sequence[PairExample],
        max_length: int,
        padding: str = "longest",
        cache_dir: Path | None = None,
    ) -> tuple[Tensors, bool]:
        """Texts (or pairs) tokenized to ``max_length``, from ``<cache_dir>/tokenized/<key>.classify.pt``
        when it holds them; labels as class ids (long) or 0/1 rows (float, multi-label)."""
        pair = self.columns.text_pair is not None

        def build() -> dict[str, Any]:
            second = [ex.text_b for ex in examples] if pair else None
            encoded = tokenizer(
                [ex.text_a for ex in examples], second, truncation=True, max_length=max_length
            )
            return {k: encoded[k] for k in FEATURES if k in encoded}

        if cache_dir is None:
            features, fresh = build(), True
        else:
            key = self._key(tokenizer, examples, max_length, pair)
            features, fresh = cached_file(Path(cache_dir) / "tokenized" / f"{key}.classify.pt", build)
        padded = tokenizer.pad(dict(features), padding=padding, max_length=max_length, return_tensors="pt")
        out = {k: padded[k] for k in FEATURES if k in padded}
        out["labels"] = self.label_tensor(examples)
        return out, fresh

    def _key(self, tokenizer: Any, examples: Sequence[PairExample], max_length: int, pair: bool) -> str:
        h = hashlib.sha256()
        name = getattr(tokenizer, "name_or_path", "")
        h.update(f"classify|{type(tokenizer).__name__}|{name}|{len(tokenizer)}|{max_length}|{pair}".encode())
        for ex in examples:
            h.update(f"\x1f{ex.text_a}\x1e{ex.text_b if pair else ''}".encode())
        return h.hexdigest()[:24]

    def label_tensor(self, examples: Sequence[PairExample]) -> torch.Tensor:
        """Class ids (long), or for multi-label one 0/1 float row of ``num_labels`` per example."""
        if not self.multi_label:
            return torch.tensor([ex.label for ex in examples], dtype=torch.long)
        bits = [[float((ex.label >> j) & 1) for j in range(self.num_labels)] for ex in examples]
        return torch.tensor(bits, dtype=torch.float32).reshape(len(examples), self.num_labels)

    def scorer(
        self, examples: Sequence[PairExample], encoded: Tensors
    ) -> SingleLabelScorer | MultiLabelScorer:
        """Macro-F1 (+ accuracy, or + micro-F1 for multi-label) of the split's rows."""
        return MultiLabelScorer() if self.multi_label else SingleLabelScorer()

    def majority_baseline(self, splits: Splits, split: str = "val") -> float:
        """Macro-F1 on ``split`` of the trivial prediction: the train split's majority class, or (multi-label)
        each label iff more than half of the train rows have it."""
        if self.multi_label:
            train = self.label_tensor(splits.train)
            prior = [int(p > 0.5) for p in (train.mean(dim=0).tolist() if len(splits.train) else [])]
            gold = [[int(v) for v in row] for row in self.label_tensor(splits.get(split)).tolist()]
            return ml_macro_f1(gold, [prior] * len(gold))
        counts = Counter(ex.label for ex in splits.train)
        majority = min(counts, key=lambda label: (-counts[label], label)) if counts else 0
        labels = [ex.label for ex in splits.get(split)]
        return macro_f1(labels, [majority] * len(labels))


def for_study(cfg: StudyConfig) -> ClassifyAgent:
    """A classify agent reading ``cfg``'s columns (hpo.agents.get_agent)."""
    return ClassifyAgent(cfg.columns)


AGENT = ClassifyAgent()
