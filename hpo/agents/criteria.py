"""The criteria agent: does a sentence express a DSM-5 criterion? Binary (criterion, sentence) -> status.

Examples pair the clinical description of the row's DSM5_symptom (text_a) with the sentence (text_b);
the label is the annotation's status. The metric is macro-F1 over classes {0, 1}.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hpo.agents.base import Tensors
from hpo.config.study import SpaceConfig
from hpo.errors import DataError
from hpo.train.data import PairExample, Splits, grouped_split, read_redsm5, warn_once
from hpo.train.heads import CLASSIFICATION
from hpo.train.tokenized import encode_cached

# Paraphrases of DSM-5 major depressive episode criteria A1-A9, plus a generic one for SPECIAL_CASE.
DSM5_DESCRIPTIONS: dict[str, str] = {
    "DEPRESSED_MOOD": "Depressed mood most of the day, nearly every day, such as feeling sad, empty or "
    "hopeless, or appearing tearful to others.",
    "ANHEDONIA": "Markedly diminished interest or pleasure in all, or almost all, activities most of the "
    "day, nearly every day.",
    "APPETITE_CHANGE": "Significant weight loss or weight gain when not dieting, or a decrease or increase "
    "in appetite nearly every day.",
    "SLEEP_ISSUES": "Insomnia or hypersomnia nearly every day: trouble falling or staying asleep, or "
    "sleeping far too much.",
    "PSYCHOMOTOR": "Psychomotor agitation or retardation nearly every day, such as restlessness or slowed "
    "movement and speech that others can observe.",
    "FATIGUE": "Fatigue or loss of energy nearly every day, so that even small tasks take great effort.",
    "WORTHLESSNESS": "Feelings of worthlessness or excessive or inappropriate guilt nearly every day.",
    "COGNITIVE_ISSUES": "Diminished ability to think or concentrate, or indecisiveness, nearly every day.",
    "SUICIDAL_THOUGHTS": "Recurrent thoughts of death, recurrent suicidal ideation with or without a "
    "specific plan, or a suicide attempt.",
    "SPECIAL_CASE": "Clinically relevant information about depression that fits no single criterion above, "
    "such as a reported diagnosis, treatment or medication, or a pattern that needs clinical judgement.",
}


def macro_f1(labels: list[int], predictions: list[int], classes: tuple[int, ...] = (0, 1)) -> float:
    """Unweighted mean of per-class F1; a class with precision + recall = 0 contributes 0.0."""
    if len(labels) != len(predictions):
        raise ValueError(f"{len(labels)} labels but {len(predictions)} predictions")
    if not labels:
        return 0.0
    total = 0.0
    for cls in classes:
        tp = sum(1 for y, p in zip(labels, predictions, strict=True) if y == cls and p == cls)
        fp = sum(1 for y, p in zip(labels, predictions, strict=True) if y != cls and p == cls)
        fn = sum(1 for y, p in zip(labels, predictions, strict=True) if y == cls and p != cls)
        total += 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return total / len(classes)


class CriteriaAgent:
    """Binary classification of (DSM-5 criterion description, sentence) pairs; metric: macro-F1."""

    name = "criteria"
    num_labels = 2
    metric_name = "macro_f1"
    baseline_name = "majority-class baseline"
    head = CLASSIFICATION

    def examples(self, data_dir: Path) -> list[PairExample]:
        """All annotation rows of ``data_dir`` as (description, sentence) -> status examples."""
        rows, _posts = read_redsm5(data_dir)
        examples = [
            PairExample(
                text_a=DSM5_DESCRIPTIONS[row["DSM5_symptom"]],
                text_b=row["sentence_text"],
                label=int(row["status"]),
                post_id=row["post_id"],
                sentence_id=row["sentence_id"],
                symptom=row["DSM5_symptom"],
            )
            for row in rows
        ]
        if len({ex.label for ex in examples}) < 2:
            raise DataError("the annotations have only one status value", "the data needs both 0 and 1 rows")
        return examples

    def load_splits(self, data_dir: Path, seed: int) -> Splits:
        """Read and validate the data, return post-grouped seeded train/val/test splits.

        A train split with one status value is a DataError (a classifier learns nothing from it: every
        trial would tie the majority baseline); a val or test split with one is a warning (its macro-F1
        cannot exceed 0.5)."""
        splits = grouped_split(self.examples(data_dir), seed)
        check_labels(splits, seed, key=(Path(data_dir).resolve(), seed))
        return splits

    def check_space(self, space: SpaceConfig, tokenizers: dict[str, Any]) -> None:
        """Every search-space choice trains a classifier."""

    def encode(
        self,
        tokenizer: Any,
        examples: Sequence[PairExample],
        max_length: int,
        padding: str = "longest",
        cache_dir: Path | None = None,
    ) -> tuple[Tensors, bool]:
        """Pairs tokenized (truncated to ``max_length``), from the disk cache when it holds them."""
        return encode_cached(tokenizer, examples, max_length, padding, cache_dir)

    def scorer(self, examples: Sequence[PairExample], encoded: Tensors) -> CriteriaScorer:
        """Macro-F1 of the split's (label, predicted class) rows."""
        return CriteriaScorer()

    def score(self, labels: list[int], predictions: list[int]) -> float:
        """Macro-F1 over classes {0, 1} (higher is better)."""
        return macro_f1(labels, predictions)

    def majority_baseline(self, splits: Splits, split: str = "val") -> float:
        """Macro-F1 on ``split`` of always predicting the train split's majority class."""
        counts = Counter(ex.label for ex in splits.train)
        majority = max(sorted(counts), key=lambda label: counts[label]) if counts else 0
        labels = [ex.label for ex in splits.get(split)]
        return self.score(labels, [majority] * len(labels))


def check_labels(splits: Splits, seed: int, key: object) -> None:
    """Refuse a train split with one status value; warn (once per ``key``) for val/test splits with one."""
    fix = f"use more data, or another --seed than {seed}: the posts are split at random by seed"
    statuses = {ex.label for ex in splits.train}
    if len(statuses) == 1:
        raise DataError(
            f"the train split has only status {statuses.pop()} rows ({len(splits.train)} example(s) from "
            f"{len({ex.post_id for ex in splits.train})} posts): nothing can be learned from it",
            fix,
        )
    for name in ("val", "test"):
        statuses = {ex.label for ex in splits.get(name)}
        if len(statuses) == 1:
            warn_once(
                (key, name),
                f"the {name} split has only status {statuses.pop()} rows ({len(splits.get(name))} "
                f"example(s)): its macro-F1 cannot exceed 0.5; {fix}",
            )


class CriteriaScorer:
    """Macro-F1 of (gold label, predicted class) rows: the same for every split."""

    def __call__(self, gold: list[Any], predictions: list[Any]) -> float:
        return macro_f1(gold, predictions)

    def metrics(self, gold: list[Any], predictions: list[Any]) -> dict[str, float]:
        return {"macro_f1": macro_f1(gold, predictions)}


AGENT = CriteriaAgent()
