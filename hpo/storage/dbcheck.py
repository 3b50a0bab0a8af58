"""Up-front checks of SQLite files (Optuna storage, MLflow backend) and of the folders a run writes to.

Each problem becomes one ``HpoError`` naming the file and the repair, in seconds, before any trial starts:
a malformed page, an MLflow schema migration that was interrupted (``_alembic_tmp_*`` tables), a folder that
is not writable, too little free disk.
"""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import sqlite3
import tempfile
from pathlib import Path

from hpo.errors import HpoError, StorageError

MIN_FREE_BYTES = 200 * 1024**2  # a study writes SQLite rows, MLflow metrics and checkpoints of tiny size


def sqlite_path(url: str) -> Path | None:
    """The file behind a ``sqlite:///`` URL (None for other URLs and in-memory databases)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").split("?")[0]
    return Path(path) if path and path != ":memory:" else None


def _tables(path: Path) -> list[str]:
    """Table names of an existing SQLite file, after its integrity check (read-only)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as conn:
        bad = conn.execute("PRAGMA quick_check(1)").fetchone()
        if bad is None or bad[0] != "ok":
            raise sqlite3.DatabaseError(bad[0] if bad else "integrity check failed")
        return [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]


def check_sqlite(path: Path, what: str) -> list[str]:
    """Open ``path`` (if it exists) and check it; its table names. StorageError naming the file otherwise."""
    if not path.is_file() or path.stat().st_size == 0:
        return []
    try:
        return _tables(path)
    except sqlite3.DatabaseError as exc:
        if "locked" in str(exc):
            return []  # busy, not broken: the next open waits for it
        raise StorageError(
            f"{what} {path} is damaged: {str(exc).splitlines()[0][:120]}",
            f"restore it from a backup, or move it away (mv {shlex.quote(str(path))} "
            f"{shlex.quote(f'{path}.broken')}) to start afresh",
        ) from exc


def check_mlflow_db(path: Path) -> None:
    """A damaged or half-migrated MLflow database is an error that says how to repair it."""
    leftovers = sorted(t for t in check_sqlite(path, "MLflow database") if t.startswith("_alembic_tmp_"))
    if leftovers:
        drops = "; ".join(f"DROP TABLE {t}" for t in leftovers)
        raise StorageError(
            f"MLflow database {path} is half-migrated (table {', '.join(leftovers)} left by an interrupted "
            "schema migration)",
            f"back it up, then run sqlite3 {shlex.quote(str(path))} {shlex.quote(drops + ';')} and mlflow db "
            f"upgrade {shlex.quote(f'sqlite:///{path}')}; or move it away to start a new MLflow history, or "
            "pass --no-mlflow",
        )


def check_writable(folder: Path, what: str, min_free: int = MIN_FREE_BYTES) -> None:
    """``folder`` exists (created if needed), takes a file and has ``min_free`` bytes free."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".hpo-write-check-"):
            pass
    except OSError as exc:
        reason = "disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise HpoError(
            f"{what} {folder} is not writable: {reason}", f"pass a writable {what} or fix its permissions"
        ) from exc
    if not os.access(folder, os.W_OK):
        raise HpoError(f"{what} {folder} is not writable", f"pass a writable {what} or fix its permissions")
    free = shutil.disk_usage(folder).free
    if free < min_free:
        raise HpoError(
            f"only {free / 1024**2:.0f} MB free on the disk of {what} {folder} "
            f"(need {min_free / 1024**2:.0f} MB)",
            "free some space or pass another --output-dir / --storage",
        )


def is_disk_full(exc: BaseException) -> bool:
    """An OSError ENOSPC, or a database error that says the disk is full (anywhere in the cause chain)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "database or disk is full" in str(seen) or "No space left on device" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
