"""A password with URL-special characters never reaches anything `hpo tune --par 2` writes or shows.

Real PostgreSQL (tests/postgres.py) with a role whose password is ``pw/@:%+=#x...``, given percent-encoded
in OPTUNA_STORAGE; MLflow on SQLite. Scanned for the raw, percent-encoded and decoded password: every file
under the output dir (the MLflow db, the workers' config, ledgers, report), the MLflow params and tags, the
study's and trials' user and system attrs, every hpo process's command line while it runs, and the output.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import optuna
import psutil
import pytest
from mlflow.tracking import MlflowClient

from hpo.storage.study import storage_of
from tests.support import CI_CONFIG, hpo_cmd, quiet_env

pytestmark = pytest.mark.slow
PASSWORD = "pw/@:%+=#x" + uuid.uuid4().hex[:6]


def _scan_role(db_url: str) -> str:
    """A role that owns the test database, logging in with PASSWORD; the storage URL for it."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    role = f"scan_{uuid.uuid4().hex[:8]}"
    base = make_url(db_url)
    admin = sa.create_engine(base.set(database="postgres"), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        literal = PASSWORD.replace("'", "''")
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN PASSWORD '{literal}'"))
        conn.execute(sa.text(f'ALTER DATABASE "{base.database}" OWNER TO {role}'))
    admin.dispose()
    encoded = quote(PASSWORD, safe="")
    return f"postgresql+psycopg://{role}:{encoded}@{base.host}:{base.port}/{base.database}"


def _hpo_cmdlines(out: Path) -> set[str]:
    found = set()
    for p in psutil.process_iter(["cmdline"]):
        with_out = " ".join(p.info.get("cmdline") or [])
        if "hpo" in with_out and str(out) in with_out:
            found.add(with_out)
    return found


def test_no_password_in_anything_hpo_writes_or_shows(tmp_path: Path, pg_url: str) -> None:
    storage = _scan_role(pg_url)
    secrets = {PASSWORD, quote(PASSWORD, safe=""), quote(PASSWORD), PASSWORD[:6] + "%"}
    secrets |= {s.encode("utf-16-le").decode("latin-1") for s in (PASSWORD,)}  # not expected, cheap to check
    out = tmp_path / "runs"
    cmd = [*hpo_cmd("tune", "--config", str(CI_CONFIG), "--output-dir", str(out)), "--par", "2"]
    cmd += ["--n-trials", "2", "--epochs", "1"]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=quiet_env() | {"OPTUNA_STORAGE": storage},
    )
    cmdlines: set[str] = set()
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        cmdlines |= _hpo_cmdlines(out)
        time.sleep(0.2)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output[-3000:]
    assert any(" worker " in c for c in cmdlines), cmdlines  # the workers were seen

    def leaks(text: str) -> list[str]:
        return sorted(s for s in secrets if s in text)

    assert leaks(output) == [], output
    assert "***@" in output  # the storage is shown, redacted
    assert [c for c in cmdlines if leaks(c)] == []
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.db" for p in files), files
    for path in files:
        assert leaks(path.read_bytes().decode("latin-1")) == [], path

    study = optuna.load_study(study_name="ci-tiny", storage=storage)
    assert len(study.trials) >= 2
    system = storage_of(study).get_study_system_attrs(study._study_id)
    attrs = [study.user_attrs, system]
    attrs += [a for t in study.trials for a in (t.user_attrs, t.system_attrs)]
    assert leaks(json.dumps(attrs, default=str)) == []

    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ci-tiny").experiment_id])
    assert len(runs) >= 3  # the study's parent run and one per trial
    logged = [(r.data.params, r.data.tags) for r in runs]
    assert leaks(json.dumps(logged)) == []
    assert any("***@" in r.data.params.get("storage", "") for r in runs)
