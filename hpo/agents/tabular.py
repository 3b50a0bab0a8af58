"""Reading a classification table: a CSV, JSONL or Parquet file or a ``datasets.save_to_disk`` folder, read
through HF ``datasets`` into plain columns, with where each row sits in the file (for error messages).

Every problem is one DataError naming the file, the row as a user counts it (the line of a CSV or JSONL
file, else the row number, 1-based) and the fix. Validating the rows: ``hpo.agents.table_rows``.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo.errors import DataError

BUILDERS = {".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
DICT_SPLIT = "__split__"  # the split column made from a DatasetDict's splits
_FIX_PATH = "pass --data PATH: a .csv, .jsonl or .parquet file or a folder written by datasets' save_to_disk"


@dataclass(frozen=True)
class Table:
    """The columns of a data file as Python lists, their ``datasets`` types, and each row's place."""

    path: Path
    columns: dict[str, list[Any]]
    types: dict[str, Any]  # column -> datasets feature (Value, List, Sequence, ...)
    places: list[str]  # per row: "line 7" (CSV, JSONL) or "row 7"

    def __len__(self) -> int:
        return len(self.places)

    def where(self, index: int) -> str:
        """``<file>, <line or row>``: the place of row ``index`` (0-based)."""
        return f"{self.path}, {self.places[index]}"


def read_table(path: Path) -> Table:
    """The table at ``path``; DataError for a missing or unreadable file, an unknown format, non-UTF-8."""
    path = Path(path)
    if path.is_dir():
        return _from_disk(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist", _FIX_PATH)
    builder = BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise DataError(f"{path}: unknown data format '{path.suffix}'", _FIX_PATH)
    places: list[str] | None = None
    if builder != "parquet":
        text = _utf8(path)
        places = _csv_lines(text) if builder == "csv" else _json_lines(path, text)
    data = _load(path, builder)
    rows = len(data)
    if places is None or len(places) != rows:
        places = [f"row {i + 1}" for i in range(rows)]
    return _table(path, data, places)


def _utf8(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}, line {line}: the file is not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
            "save it as UTF-8, e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`",
        ) from None


def _csv_lines(text: str) -> list[str]:
    """The first line of every record after the header (a quoted field may span lines; blank lines are
    skipped, as pandas skips them)."""
    reader = csv.reader(io.StringIO(text))
    places, previous = [], 0
    for i, record in enumerate(reader):
        start, previous = previous + 1, reader.line_num
        if i > 0 and any(field.strip() for field in record):
            places.append(f"line {start}")
    return places


def _json_lines(path: Path, text: str) -> list[str]:
    """The line of every JSON record of a JSON Lines file; DataError naming the first malformed one."""
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        return []  # one JSON array: rows are counted, not lines
    places = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise DataError(
                f"{path}, line {number}: not valid JSON ({exc})", "write one JSON object per line"
            ) from None
        if not isinstance(record, dict):
            raise DataError(
                f"{path}, line {number}: a JSON {type(record).__name__}, not an object",
                'write one object per line, e.g. {"text": "...", "label": "..."}',
            )
        places.append(f"line {number}")
    return places


def _load(path: Path, builder: str) -> Any:
    """The file as a ``datasets.Dataset``, built in a temporary cache that is removed afterwards."""
    import datasets
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    with tempfile.TemporaryDirectory(prefix="hpo-read-") as cache:
        try:
            data = datasets.load_dataset(
                builder, data_files=str(path), split="train", cache_dir=cache, keep_in_memory=True
            )
        except Exception as exc:  # pyarrow/pandas errors vary by format: name the file and the first line
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            cause = exc.__cause__ or exc.__context__
            if cause is not None and str(cause).strip():
                first += f": {str(cause).strip().splitlines()[0][:300]}"
            raise DataError(
                f"{path}: cannot be read as {builder} ({first})",
                f"check that it is valid {builder}: one type per column, the same columns in every row",
            ) from None
        return data


def _from_disk(path: Path) -> Table:
    """A ``save_to_disk`` folder: a Dataset, or a DatasetDict whose split names become the split column."""
    import datasets

    try:
        data = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise DataError(
            f"{path} is a folder but not one written by datasets' save_to_disk ({exc})", _FIX_PATH
        ) from None
    if isinstance(data, datasets.DatasetDict):
        parts = [data[name] for name in data]
        names = [name for name in data for _ in range(len(data[name]))]
        places = [f"row {i + 1} of split '{name}'" for name in data for i in range(len(data[name]))]
        merged = datasets.concatenate_datasets(parts).add_column(DICT_SPLIT, names)
        return _table(path, merged, places)
    return _table(path, data, [f"row {i + 1}" for i in range(len(data))])


def _table(path: Path, data: Any, places: list[str]) -> Table:
    return Table(path, data.to_dict(), dict(data.features), places)
