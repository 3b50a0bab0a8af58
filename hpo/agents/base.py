"""What the objective needs from an agent."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from hpo.train.data import Splits


class Agent(Protocol):
    """A classification task: how to read its data and how to score it."""

    name: str
    num_labels: int
    metric_name: str

    def load_splits(self, data_dir: Path, seed: int) -> Splits:
        """Read and validate the data, return post-grouped seeded train/val/test splits."""
        ...

    def score(self, labels: list[int], predictions: list[int]) -> float:
        """The metric Optuna maximises (higher is better)."""
        ...

    def majority_baseline(self, splits: Splits, split: str = "val") -> float:
        """The metric of always predicting the train split's majority class on ``split``."""
        ...
