"""What the objective needs from an agent: its data, how it is encoded, which head trains it, its metric."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from hpo.config.study import SpaceConfig
from hpo.train.data import PairExample, Splits
from hpo.train.heads import Head, Tensors


class Scorer(Protocol):
    """The metric of one split: reads the loop's (gold, predictions) rows (hpo.train.loop.evaluate)."""

    def __call__(self, gold: list[Any], predictions: list[Any]) -> float:
        """The metric Optuna maximises (higher is better)."""
        ...

    def metrics(self, gold: list[Any], predictions: list[Any]) -> dict[str, float]:
        """Every metric the agent reports, the optimised one included (named ``metric_name``)."""
        ...


class Agent(Protocol):
    """A task: how to read its data, encode it, which head trains it and how it is scored.

    An agent is a module ``hpo/agents/<name>.py`` exposing ``AGENT`` plus ``configs/agents/<name>.yaml``.
    """

    name: str
    num_labels: int
    metric_name: str
    baseline_name: str  # what majority_baseline predicts, as the run summary names it
    head: Head

    def load_splits(self, data_dir: Path, seed: int) -> Splits:
        """Read and validate the data, return post-grouped seeded train/val/test splits."""
        ...

    def check_space(self, space: SpaceConfig, tokenizers: dict[str, Any]) -> None:
        """ConfigError for a search-space choice the agent cannot train with the study's ``tokenizers`` (by
        model name), before any trial starts."""
        ...

    def encode(
        self,
        tokenizer: Any,
        examples: Sequence[PairExample],
        max_length: int,
        padding: str = "longest",
        cache_dir: Path | None = None,
    ) -> tuple[Tensors, bool]:
        """(tensors: model inputs and the head's targets, whether this call tokenized)."""
        ...

    def scorer(self, examples: Sequence[PairExample], encoded: Tensors) -> Scorer:
        """The metric of the split ``examples`` (encoded as ``encoded``)."""
        ...

    def majority_baseline(self, splits: Splits, split: str = "val") -> float:
        """The metric on ``split`` of the trivial prediction (majority class, or no answer)."""
        ...
