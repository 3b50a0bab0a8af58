"""A classification table's rows, validated: text, optional pair, label(s), group and split of every row.

The label column decides the mode: one string or int per row is single-label multi-class, a list per row is
multi-label. Each problem is one DataError naming the file, the row (``Table.where``) and the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hpo.agents.tabular import DICT_SPLIT, Table
from hpo.config.columns import ColumnsConfig
from hpo.errors import DataError

SPLIT_NAMES = {
    "train": "train",
    "validation": "val",
    "val": "val",
    "valid": "val",
    "dev": "val",
    "test": "test",
}
_TEXT_TYPES = ("string", "large_string")
_FLAGS = {
    "text": "--text-col",
    "text_pair": "--text-pair-col",
    "label": "--label-col",
    "group": "--group-col",
}


@dataclass(frozen=True)
class Row:
    """One validated row: ``labels`` holds its class ids (one for single-label, a set for multi-label)."""

    index: int  # 0-based position in the table
    text: str
    pair: str | None
    labels: tuple[int, ...]
    group: str  # rows of one group stay in one split (a row without a group column is its own group)
    split: str | None  # train / val / test from the split column, None without one


@dataclass(frozen=True)
class Rows:
    """The validated rows of a table, the label names (class id = position) and the mode."""

    table: Table
    rows: list[Row]
    names: tuple[str, ...]
    multi_label: bool


def _kind(feature: Any) -> tuple[bool, str]:
    """(is a list column, the dtype of its values) of a ``datasets`` feature."""
    inner = getattr(feature, "feature", None)
    if inner is not None:
        return True, str(getattr(inner, "dtype", type(inner).__name__))
    return False, str(getattr(feature, "dtype", type(feature).__name__))


def _column(table: Table, name: str, role: str) -> list[Any]:
    if name not in table.columns:
        have = ", ".join(c for c in table.columns if c != DICT_SPLIT)
        flag = _FLAGS.get(role, "--split-col")
        raise DataError(
            f"{table.path} has no column '{name}' (its columns: {have})",
            f"name the {role.replace('_', ' ')} column with {flag} or columns.{role} in the study YAML",
        )
    return table.columns[name]


def _wrong_type(table: Table, name: str, role: str, dtype: str, want: str) -> DataError:
    values = table.columns[name]
    first = next((i for i, v in enumerate(values) if v is not None), 0)
    example = f" (e.g. {values[first]!r} at {table.places[first]})" if values else ""
    return DataError(
        f"{table.path}: column '{name}' holds {dtype} values{example}, but the {role.replace('_', ' ')} "
        f"column must hold {want}",
        f"name the right column with {_FLAGS.get(role, '--split-col')}, or convert that column",
    )


def _texts(table: Table, name: str, role: str) -> list[str]:
    values = _column(table, name, role)
    is_list, dtype = _kind(table.types[name])
    if is_list or (dtype not in _TEXT_TYPES and dtype != "null"):
        raise _wrong_type(table, name, role, f"list of {dtype}" if is_list else dtype, "text")
    for i, value in enumerate(values):
        if value is None or not str(value).strip():
            raise DataError(
                f"{table.where(i)}: empty {role.replace('_', ' ')} in column '{name}'",
                "fill it in or remove the row",
            )
    return [str(v) for v in values]


def _label_value(table: Table, name: str, i: int, value: Any, dtype: str) -> str | int:
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        raise DataError(
            f"{table.where(i)}: empty label in column '{name}'", "give the row a label or remove it"
        )
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise _wrong_type(table, name, "label", dtype, "strings or ints")
        return int(value)
    if isinstance(value, int):
        return value
    return str(value).strip()


def _labels(table: Table, name: str) -> tuple[list[list[str | int]], bool]:
    """Each row's labels (one for single-label) and whether the column is multi-label."""
    values = _column(table, name, "label")
    is_list, dtype = _kind(table.types[name])
    shown = f"list of {dtype}" if is_list else dtype
    accepted = dtype in _TEXT_TYPES or dtype == "bool" or dtype.startswith(("int", "uint", "float"))
    if not accepted and dtype != "null":
        raise _wrong_type(table, name, "label", shown, "strings or ints")
    if not is_list:
        return [[_label_value(table, name, i, v, shown)] for i, v in enumerate(values)], False
    out = []
    for i, value in enumerate(values):
        if value is None:
            raise DataError(
                f"{table.where(i)}: empty label list in column '{name}'",
                "give the row a list of labels ([] for none) or remove it",
            )
        out.append(sorted({_label_value(table, name, i, v, shown) for v in value}, key=str))
    return out, True


def _splits(table: Table, name: str) -> list[str]:
    values = _column(table, name, "split")
    out = []
    for i, value in enumerate(values):
        split = SPLIT_NAMES.get(str(value).strip().lower()) if value is not None else None
        if split is None:
            raise DataError(
                f"{table.where(i)}: split {value!r} in column '{name}' is not train, validation or test",
                "write train, validation (or val, dev) or test in every row",
            )
        out.append(split)
    return out


def read_rows(table: Table, columns: ColumnsConfig) -> Rows:
    """Validate ``table`` as ``columns`` name its parts; DataError naming the first bad row."""
    if not len(table):
        raise DataError(f"{table.path} holds no rows", "use a file with a header and at least a few rows")
    texts = _texts(table, columns.text, "text")
    pairs = _texts(table, columns.text_pair, "text_pair") if columns.text_pair else None
    labels, multi = _labels(table, columns.label)
    split_col = columns.split or (DICT_SPLIT if DICT_SPLIT in table.columns else None)
    splits = _splits(table, split_col) if split_col else None
    groups = _column(table, columns.group, "group") if columns.group else None
    seen = {v for row in labels for v in row}
    numeric = all(isinstance(v, int) for v in seen)
    names = sorted(seen, key=lambda v: (0, v, "") if numeric else (1, 0, str(v)))
    ids = {v: i for i, v in enumerate(names)}
    rows = [
        Row(
            index=i,
            text=texts[i],
            pair=pairs[i] if pairs is not None else None,
            labels=tuple(sorted(ids[v] for v in labels[i])),
            group=str(groups[i]) if groups is not None and groups[i] is not None else f"\x00row{i}",
            split=splits[i] if splits is not None else None,
        )
        for i in range(len(table))
    ]
    if len(names) < 2 and not multi:
        raise DataError(
            f"{table.path}: column '{columns.label}' has only one label ({names[0]!r})",
            "a classifier needs at least two classes",
        )
    if not names:
        raise DataError(f"{table.path}: no row of column '{columns.label}' has a label", "label some rows")
    return Rows(table, rows, tuple(str(n) for n in names), multi)
