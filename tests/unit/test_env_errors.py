"""Environment and input problems are one `error:` line naming the file or flag, exit 2, in seconds."""

from __future__ import annotations

import csv
import errno
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hpo.commands import app
from hpo.config.study import load_config
from hpo.device.faults import FaultInjector, FaultPlan
from hpo.errors import DataError
from hpo.paths import SAMPLE_DATA_DIR
from hpo.run.bootstrap import start_study
from hpo.run.setup import prepare
from hpo.storage import dbcheck
from hpo.storage.dbcheck import is_disk_full
from hpo.train.data import PairExample, Splits, clean_splits
from tests.support import CI_CONFIG


def invoke(*args: str) -> str:
    """Run `hpo ARGS`; return its single error line (asserting exit 2, one line, no traceback)."""
    result = CliRunner().invoke(app, list(args))
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def tune(out: Path, *extra: str) -> str:
    return invoke("tune", "--config", str(CI_CONFIG), "--output-dir", str(out), "--n-trials", "1", *extra)


def test_corrupt_storage_page_names_the_file(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    cfg = load_config(CI_CONFIG, {"output_dir": out, "mlflow": False})
    start_study(cfg, prepare(cfg))
    db = out / "hpo.db"
    data = bytearray(db.read_bytes())
    data[4096 * 2 : 4096 * 4] = b"\xa5" * (4096 * 2)  # garbage over two b-tree pages
    db.write_bytes(bytes(data))
    for line in (invoke("trials", "--study", "ci-tiny", "--output-dir", str(out)), tune(out, "--no-mlflow")):
        assert str(db) in line and "damaged" in line and "backup" in line


def test_half_migrated_mlflow_db_says_how_to_repair(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    out.mkdir()
    with sqlite3.connect(out / "mlflow.db") as conn:
        conn.execute("CREATE TABLE experiments (id INTEGER)")
        conn.execute("CREATE TABLE _alembic_tmp_experiments (id INTEGER)")
    line = tune(out)
    assert "half-migrated" in line and "_alembic_tmp_experiments" in line and "mlflow db upgrade" in line


def test_output_dir_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = tune(blocker / "runs", "--no-mlflow")
    assert "output dir" in line and "not writable" in line


def test_too_little_free_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.disk_usage

    def tiny(path: Any) -> Any:
        return real(path)._replace(free=1024**2)

    monkeypatch.setattr(dbcheck.shutil, "disk_usage", tiny)
    assert "only 1 MB free" in tune(tmp_path / "runs", "--no-mlflow")


def test_non_utf8_csv_names_the_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(SAMPLE_DATA_DIR, data)
    posts = data / "redsm5_posts.csv"
    posts.write_bytes(posts.read_bytes() + b'p999,"caf\xe9 latin-1"\n')
    line = tune(tmp_path / "runs", "--no-mlflow", "--data-dir", str(data))
    assert str(posts) in line and "UTF-8" in line


def _ex(text: str, label: int, post: str) -> PairExample:
    return PairExample("criterion", text, label, post, f"{post}-s", "FATIGUE")


def test_empty_texts_and_contradictory_duplicates_are_refused_or_dropped() -> None:
    good = [_ex(f"fine {i}", i % 2, f"p{i}") for i in range(6)]
    dirty = [_ex("  ", 1, "p10"), _ex("Tired all day", 1, "p11"), _ex("tired all day", 0, "p12")]
    splits = Splits(train=good[:4] + dirty, val=good[4:5], test=good[5:])
    with pytest.raises(DataError, match="1 example\\(s\\) with empty text and 2 contradictory"):
        clean_splits(splits, allow_dirty=False)
    kept, dropped = clean_splits(splits, allow_dirty=True)
    assert dropped == 3 and kept.train == good[:4]
    assert clean_splits(kept, allow_dirty=False) == (kept, 0)


def test_dirty_data_on_the_command_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(SAMPLE_DATA_DIR, data)
    ann = data / "redsm5_annotations.csv"
    with ann.open(newline="") as handle:
        first = list(csv.reader(handle))[1]  # sentences may hold commas: parse, do not split
    first[2] = ""  # sentence_text
    with ann.open("a", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerow(first)
    assert "--allow-dirty-data" in tune(tmp_path / "runs", "--no-mlflow", "--data-dir", str(data))


def test_flag_errors_name_the_flag_not_the_yaml(tmp_path: Path) -> None:
    line = tune(tmp_path / "runs", "--no-mlflow", "--par", "0")
    assert "--par" in line and "ci-tiny.yaml" not in line
    assert "--par" in tune(tmp_path / "runs", "--no-mlflow", "--par", "1000")
    assert "--study" in tune(tmp_path / "runs", "--no-mlflow", "--study", "")
    bad = tmp_path / "bad.yaml"
    bad.write_text(CI_CONFIG.read_text() + "par: 0\n")
    line = invoke("tune", "--config", str(bad), "--output-dir", str(tmp_path / "runs"), "--no-mlflow")
    assert str(bad) in line and "'par'" in line


def test_injected_disk_full_is_recognised() -> None:
    plan = FaultPlan.from_env({"HPO_INJECT_ENOSPC": "epoch=0,step=2"})
    injector = FaultInjector(plan, 0)
    injector.check(0, 1)
    with pytest.raises(OSError) as info:
        injector.check(0, 2)
    assert info.value.errno == errno.ENOSPC and is_disk_full(info.value)
    wrapped = RuntimeError("commit failed")
    wrapped.__cause__ = sqlite3.OperationalError("database or disk is full")
    assert is_disk_full(wrapped) and not is_disk_full(RuntimeError("other"))


def test_sync_mlflow_without_a_database(tmp_path: Path) -> None:
    line = invoke("sync-mlflow", "--study", "s", "--output-dir", str(tmp_path / "none"))
    assert "no MLflow database" in line and not (tmp_path / "none").exists()
