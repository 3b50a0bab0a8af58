"""Commands hpo prints for the user to paste are shell-quoted: names and paths with spaces, quotes or
shell characters come back as the same arguments."""

from __future__ import annotations

import shlex
import sqlite3
from pathlib import Path

import pytest

from hpo.errors import StorageError
from hpo.run.report import TuneReport
from hpo.storage.dbcheck import check_mlflow_db, check_sqlite

ODD = "it's a $study (v2)"


def _command(line: str, start: str) -> list[str]:
    return shlex.split(line[line.index(start) :])


def test_the_tune_summary_quotes_its_commands() -> None:
    storage = "sqlite:////tmp/my runs/hpo.db"
    report = TuneReport(
        study=ODD, storage=storage, target=1, finished_before=0, mlflow_uri="sqlite:///a b.db"
    )
    lines = report.lines()
    trials = next(line for line in lines if line.startswith("trials:"))
    assert _command(trials, "hpo trials") == ["hpo", "trials", "--study", ODD, "--storage", storage]
    mlflow = next(line for line in lines if line.startswith("MLflow:"))
    assert _command(mlflow, "mlflow ui") == ["mlflow", "ui", "--backend-store-uri", "sqlite:///a b.db"]


def test_a_damaged_database_gets_a_quoted_mv(tmp_path: Path) -> None:
    db = tmp_path / "my runs" / "hpo.db"
    db.parent.mkdir()
    db.write_bytes(b"this is not a database file" * 100)
    with pytest.raises(StorageError) as info:
        check_sqlite(db, "Optuna storage")
    fix = str(info.value.fix)
    assert shlex.split(fix[fix.index("mv ") : fix.index(") to start")]) == ["mv", str(db), f"{db}.broken"]


def test_a_half_migrated_mlflow_db_gets_quoted_commands(tmp_path: Path) -> None:
    db = tmp_path / "my runs" / "mlflow.db"
    db.parent.mkdir()
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE _alembic_tmp_runs (x INTEGER)")
    with pytest.raises(StorageError) as info:
        check_mlflow_db(db)
    fix = str(info.value.fix)
    sqlite_cmd = fix[fix.index("sqlite3 ") : fix.index(" and mlflow db upgrade")]
    assert shlex.split(sqlite_cmd) == ["sqlite3", str(db), "DROP TABLE _alembic_tmp_runs;"]
    upgrade = fix[fix.index("mlflow db upgrade") : fix.index("; or move")]
    assert shlex.split(upgrade) == ["mlflow", "db", "upgrade", f"sqlite:///{db}"]
