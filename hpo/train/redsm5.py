"""ReDSM5 files: reading and validating ``redsm5_annotations.csv`` and ``redsm5_posts.csv``.

Valid CSV of any field length is read (the csv module's field limit is lifted while reading), broken quoting
is an error naming the file and line, a post_id with two texts is an error, exact repeats are dropped with
one warning. ``hpo.train.data`` re-exports the names callers use.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from hpo.errors import DataError

log = logging.getLogger(__name__)

ANNOTATIONS_FILE = "redsm5_annotations.csv"
POSTS_FILE = "redsm5_posts.csv"
ANNOTATION_COLUMNS = ("post_id", "sentence_id", "sentence_text", "DSM5_symptom", "status", "explanation")
POST_COLUMNS = ("post_id", "text")
DSM5_SYMPTOMS = (
    "DEPRESSED_MOOD",
    "ANHEDONIA",
    "APPETITE_CHANGE",
    "SLEEP_ISSUES",
    "PSYCHOMOTOR",
    "FATIGUE",
    "WORTHLESSNESS",
    "COGNITIVE_ISSUES",
    "SUICIDAL_THOUGHTS",
    "SPECIAL_CASE",
)
# Status spellings accepted (a pandas export may write 1.0); normalised to "0" / "1".
_STATUS = {"0": "0", "1": "1", "0.0": "0", "1.0": "1"}
# csv.field_size_limit takes a C long (32 bits on Windows): the largest value every platform accepts
_FIELD_LIMIT = 2**31 - 1
_WARNED: set[object] = set()
_FIX_DIR = f"pass --data-dir pointing to a folder with {ANNOTATIONS_FILE} and {POSTS_FILE}"


def _read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """Rows of one CSV as dicts, after checking it exists, is non-empty and has the required columns."""
    if not path.is_file():
        raise DataError(f"data file {path.name} is missing in {path.parent}", _FIX_DIR)
    try:
        with _no_field_limit():
            return _parse_csv(path, required)
    except UnicodeDecodeError as exc:
        bad = bytes(exc.object[exc.start : exc.start + 1]).hex()
        raise DataError(
            f"data file {path} is not valid UTF-8 (byte 0x{bad})",
            "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
        ) from None


@contextmanager
def _no_field_limit() -> Iterator[None]:
    """Lift the csv module's process-wide field limit (131072 characters) while a file is read: a long
    post in a valid file is data, not an error. Broken quoting is still caught: the reader is strict."""
    previous = csv.field_size_limit(_FIELD_LIMIT)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _parse_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        # strict: an unclosed quote is an error, not a field that swallows the rest of the file
        reader = csv.DictReader(handle, strict=True)
        start = 1  # the line the record being read starts on
        try:
            header = [name.strip() for name in reader.fieldnames or []]
            if not header:
                raise DataError(
                    f"data file {path.name} is empty", f"write the header {','.join(required)} and rows"
                )
            missing = [col for col in required if col not in header]
            if missing:
                raise DataError(
                    f"{path.name} lacks column(s) {', '.join(missing)}",
                    f"expected columns: {', '.join(required)}",
                )
            reader.fieldnames = header
            rows = []
            start = reader.line_num + 1
            for row in reader:
                rows.append({key: (value or "").strip() for key, value in row.items() if key is not None})
                start = reader.line_num + 1
        except csv.Error as exc:
            raise DataError(
                f"data file {path} is not valid CSV in the record starting on line {start}: {exc}",
                "fix the file's quoting: a quoted field ends with a quote followed by a comma or the line's "
                'end, and a quote inside it is written twice: ""',
            ) from None
    if not rows:
        raise DataError(f"data file {path.name} has a header but no rows", "add data rows")
    return rows


def warn_once(key: object, message: str) -> None:
    """Log ``message`` as a warning the first time ``key`` is seen in this process (data is loaded more
    than once: a study's setup, the final evaluation)."""
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning("warning: %s", message)


def _rows_text(numbers: Sequence[int], limit: int = 5) -> str:
    return ("row " if len(numbers) == 1 else "rows ") + short_list([str(n) for n in numbers], limit)


def short_list(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def read_redsm5(data_dir: Path) -> tuple[list[dict[str, str]], dict[str, str]]:
    """Read and validate ``redsm5_annotations.csv`` and ``redsm5_posts.csv`` from ``data_dir``.

    Returns the annotation rows (status normalised to "0"/"1") and a post_id -> post text mapping.
    Every problem (missing directory/file/column, broken CSV quoting, unknown label, bad status, orphan
    post_id, a post_id with two different texts) is a DataError. Repeats are dropped with one warning: a
    post row repeating an earlier one, and an annotation row equal to an earlier one in every column the
    agents read (all but ``explanation``); the first of each is kept.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data directory {data_dir} does not exist", _FIX_DIR)
    rows = _read_csv(data_dir / ANNOTATIONS_FILE, ANNOTATION_COLUMNS)
    posts = _posts(_read_csv(data_dir / POSTS_FILE, POST_COLUMNS), data_dir)

    unknown = sorted({row["DSM5_symptom"] for row in rows} - set(DSM5_SYMPTOMS))
    if unknown:
        raise DataError(
            f"{ANNOTATIONS_FILE} has unknown DSM5_symptom label(s): {short_list(unknown)}",
            f"use one of {', '.join(DSM5_SYMPTOMS)}",
        )
    for number, row in enumerate(rows, start=1):
        if row["status"] not in _STATUS:
            raise DataError(
                f"{ANNOTATIONS_FILE} row {number}: status '{row['status']}' is not 0 or 1",
                "status must be 1 (symptom present) or 0 (absent)",
            )
        row["status"] = _STATUS[row["status"]]
    rows = _unique_annotations(rows, data_dir)
    orphans = sorted({row["post_id"] for row in rows} - set(posts))
    if orphans:
        raise DataError(
            f"{ANNOTATIONS_FILE} has post_id(s) not in {POSTS_FILE}: {short_list(orphans)}",
            f"add those posts to {POSTS_FILE} or drop their annotations",
        )
    return rows, posts


def _posts(rows: list[dict[str, str]], data_dir: Path) -> dict[str, str]:
    """post_id -> text; a post_id with two texts is a DataError, an identical repeat is dropped."""
    posts: dict[str, str] = {}
    first: dict[str, int] = {}
    clashes: list[tuple[str, int, int]] = []
    repeats: list[int] = []
    for number, row in enumerate(rows, start=1):
        post_id, text = row["post_id"], row["text"]
        if post_id not in posts:
            posts[post_id], first[post_id] = text, number
        elif posts[post_id] == text:
            repeats.append(number)
        else:
            clashes.append((post_id, first[post_id], number))
    if clashes:
        post_id, a, b = clashes[0]
        more = f"; {len(clashes) - 1} more repeated post_id(s) differ too" if len(clashes) > 1 else ""
        raise DataError(
            f"{POSTS_FILE} has post_id {post_id} twice with different texts (rows {a} and {b}){more}",
            "give each post one row: delete the wrong one, or give it its own post_id",
        )
    if repeats:
        warn_once(
            (data_dir.resolve(), POSTS_FILE, tuple(repeats)),
            f"{POSTS_FILE} repeats {len(repeats)} post(s) with the same post_id and text "
            f"({_rows_text(repeats)}): dropped, the first of each kept",
        )
    return posts


_DUPLICATE_KEY = ANNOTATION_COLUMNS[:5]  # every column the agents read (explanation is not)


def _unique_annotations(rows: list[dict[str, str]], data_dir: Path) -> list[dict[str, str]]:
    """The annotation rows without repeats (same values in ``_DUPLICATE_KEY``), with one warning."""
    seen: set[tuple[str, ...]] = set()
    unique: list[dict[str, str]] = []
    repeats: list[int] = []
    for number, row in enumerate(rows, start=1):
        key = tuple(row[col] for col in _DUPLICATE_KEY)
        if key in seen:
            repeats.append(number)
        else:
            seen.add(key)
            unique.append(row)
    if repeats:
        warn_once(
            (data_dir.resolve(), ANNOTATIONS_FILE, tuple(repeats)),
            f"{ANNOTATIONS_FILE} has {len(repeats)} duplicate row(s) ({_rows_text(repeats)}: the same "
            f"{', '.join(_DUPLICATE_KEY)} as an earlier row): dropped, the first of each kept",
        )
    return unique
