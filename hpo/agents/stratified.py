"""Train / validation / test splits of classification rows: the user's split column, or a seeded split
stratified by label and grouped (rows of one group never straddle splits).

The seeded split orders the groups by stratum (a group's majority label; for multi-label its rarest label),
shuffles each stratum by seed and deals its groups out in the proportions 70/15/15, the stratum's first
group always to train: every class with a group is trained on, and each split gets its share of each class.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from hpo.agents.table_rows import Row, Rows
from hpo.errors import DataError

FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}
SPLITS = ("train", "val", "test")
_SHOWN = {"train": "train", "val": "validation", "test": "test"}


@dataclass(frozen=True)
class RowSplits:
    """The rows of each split, in table order."""

    train: list[Row]
    val: list[Row]
    test: list[Row]

    def get(self, split: str) -> list[Row]:
        rows: list[Row] = getattr(self, split)
        return rows


def check_counts(rows: Rows) -> None:
    """A class with a single example cannot be both trained on and evaluated: DataError naming its row."""
    counts = Counter(label for row in rows.rows for label in row.labels)
    for row in rows.rows:
        for label in row.labels:
            if counts[label] == 1:
                raise DataError(
                    f"{rows.table.where(row.index)}: label '{rows.names[label]}' has only this one example",
                    "a class needs at least 2 examples: add examples of it or remove the row",
                )


def _stratum(group: list[Row], rows: Rows, frequency: Counter[int]) -> int:
    labels = [label for row in group for label in row.labels]
    if not labels:
        return -1
    if rows.multi_label:  # the group's rarest label: rare labels are spread first
        return min(labels, key=lambda label: (frequency[label], label))
    counts = Counter(labels)
    return min(counts, key=lambda label: (-counts[label], label))


def stratified_split(rows: Rows, seed: int) -> RowSplits:
    """Seeded, label-stratified, group-preserving 70/15/15 split; DataError when a split would be empty."""
    groups: dict[str, list[Row]] = {}
    for row in rows.rows:
        groups.setdefault(row.group, []).append(row)
    if len(groups) < 3:
        raise DataError(
            f"{rows.table.path}: {len(groups)} group(s) cannot fill train, validation and test",
            "use more rows (or more distinct values in the group column)",
        )
    frequency = Counter(label for row in rows.rows for label in row.labels)
    strata: dict[int, list[str]] = {}
    for name, members in groups.items():
        strata.setdefault(_stratum(members, rows, frequency), []).append(name)
    rng = random.Random(seed)
    assigned: dict[str, str] = {}
    dealt = dict.fromkeys(SPLITS, 0)
    for key in sorted(strata):
        names = sorted(strata[key])
        rng.shuffle(names)
        for position, name in enumerate(names):
            if position == 0:
                split = "train"
            else:  # the split furthest below its share of the groups dealt so far
                total = sum(dealt.values()) + 1
                split = max(SPLITS, key=lambda s: (total * FRACTIONS[s] - dealt[s], -SPLITS.index(s)))
            assigned[name] = split
            dealt[split] += 1
    for split in ("val", "test"):
        if not dealt[split]:  # few groups: move one from train (its own stratum's first group stays)
            spare = sorted(n for n, s in assigned.items() if s == "train")
            assigned[spare[-1]] = split
    parts = {s: [row for row in rows.rows if assigned[row.group] == s] for s in SPLITS}
    return RowSplits(parts["train"], parts["val"], parts["test"])


def column_split(rows: Rows) -> RowSplits:
    """The split column's train / validation / test rows; DataError when one of them is empty."""
    parts = {s: [row for row in rows.rows if row.split == s] for s in SPLITS}
    for split in SPLITS:
        if not parts[split]:
            raise DataError(
                f"{rows.table.path}: no row is in the {_SHOWN[split]} split",
                f"mark some rows '{_SHOWN[split]}' in the split column",
            )
    return RowSplits(parts["train"], parts["val"], parts["test"])


def check_seen(rows: Rows, splits: RowSplits, seeded: bool) -> None:
    """A label of a validation or test row that no train row has: DataError naming the row."""
    trained = {label for row in splits.train for label in row.labels}
    for split in ("val", "test"):
        for row in splits.get(split):
            for label in row.labels:
                if label not in trained:
                    fix = (
                        "put more rows with that label in other groups, or use another --seed"
                        if seeded
                        else "move a row with that label to train, or remove the row"
                    )
                    raise DataError(
                        f"{rows.table.where(row.index)}: label '{rows.names[label]}' is in the "
                        f"{_SHOWN[split]} split but in no train row",
                        fix,
                    )


def split_rows(rows: Rows, seed: int) -> RowSplits:
    """The rows' splits (split column, else seeded), validated: every class seen twice and trained on."""
    check_counts(rows)
    seeded = rows.rows[0].split is None
    splits = stratified_split(rows, seed) if seeded else column_split(rows)
    check_seen(rows, splits, seeded)
    return splits
