"""A storage or MLflow password never reaches what hpo stores, logs or shows (unit tier: no server).

The password has every character that URL parsers treat specially; each check looks for it raw, as
written in the URL (percent-encoded) and decoded. The integration tier (test_secret_scan_postgres) runs a
real `hpo tune --par 2` against PostgreSQL and scans every file, database row, command line and output.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from hpo.config.study import MLFLOW_URI_ENV, StudyConfig
from hpo.run import launcher as launcher_mod
from hpo.run import setup as setup_mod
from hpo.run.report import TuneReport
from hpo.storage.study import public_config
from hpo.tracking.base import flatten

PASSWORD = "pw/@:%+=#x"
ENCODED = quote(PASSWORD, safe="")
STORAGE = f"postgresql+psycopg://hpo_scan:{ENCODED}@127.0.0.1:5432/hpo"
MLFLOW = f"postgresql://mlflow:{ENCODED}@127.0.0.1:5432/mlflow"
SECRETS = (PASSWORD, ENCODED, "pw/", "%2F%40")


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


@pytest.fixture
def cfg(tmp_path: Path) -> StudyConfig:
    return StudyConfig(study="scan", storage=STORAGE, mlflow_uri=MLFLOW, output_dir=tmp_path, par=2)


def test_the_stored_config_has_no_password(cfg: StudyConfig) -> None:
    """What the study keeps in its user attrs and what the workers' config file holds."""
    assert leaks(json.dumps(public_config(cfg))) == []


def test_the_mlflow_params_have_no_password(cfg: StudyConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_tracker(*args: Any, **kwargs: Any) -> None:
        seen["args"], seen["kwargs"] = args, kwargs

    monkeypatch.setattr(setup_mod, "make_tracker", fake_tracker)
    setup_mod.tracker_for(cfg)
    settings = next(a for a in seen["args"] if isinstance(a, dict))
    assert settings["storage"].startswith("postgresql+psycopg://hpo_scan:***@")
    assert leaks(json.dumps(flatten(settings))) == []


def test_worker_command_lines_have_no_password(cfg: StudyConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[tuple[list[str], dict[str, str]]] = []

    class FakePopen:
        pid = 4242

        def __init__(self, cmd: list[str], env: dict[str, str], **_: Any) -> None:
            started.append((cmd, env))

    monkeypatch.setattr(launcher_mod.subprocess, "Popen", FakePopen)
    launcher = launcher_mod.Launcher(cfg, 2)
    launcher._spawn()
    launcher._spawn()
    assert len(started) == 2
    for cmd, env in started:
        assert leaks(" ".join(cmd)) == [], cmd  # `ps` shows command lines to every user of the host
        # the URLs travel by environment (readable by the same user only)
        assert env["OPTUNA_STORAGE"] == STORAGE and env[MLFLOW_URI_ENV] == MLFLOW
        assert (
            leaks(" ".join(f"{k}={v}" for k, v in env.items() if k not in ("OPTUNA_STORAGE", MLFLOW_URI_ENV)))
            == []
        )
    assert os.environ.get("OPTUNA_STORAGE") != STORAGE  # the launcher's own environment is untouched


def test_the_closing_summary_has_no_password(cfg: StudyConfig) -> None:
    from hpo.redact import redact

    report = TuneReport(
        study="scan", storage=redact(STORAGE), target=1, finished_before=0, mlflow_uri=redact(MLFLOW)
    )
    report.counts = {"complete": 0, "pruned_oom": 1}
    assert leaks("\n".join(report.lines())) == []
