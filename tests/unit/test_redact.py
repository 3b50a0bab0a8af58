"""Storage and MLflow URLs with passwords: redacted where shown, absent where stored (hpo.redact)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from hpo.config.study import StudyConfig
from hpo.redact import is_redacted, password_of, redact, redact_text
from hpo.run.protocol import write_private
from hpo.storage.rdb import POOL_SIZE, engine_kwargs, heartbeat_settings, is_server_url
from hpo.storage.study import public_config

URL = "postgresql://hpo:s3cr%40t-pw@db.example:5432/hpo?sslmode=require"


def test_redact_masks_the_password_only() -> None:
    assert redact(URL) == "postgresql://hpo:***@db.example:5432/hpo?sslmode=require"
    assert password_of(URL) == "s3cr%40t-pw" and password_of(redact(URL)) is None
    assert is_redacted(redact(URL)) and not is_redacted(URL)
    assert redact("sqlite:////tmp/hpo.db") == "sqlite:////tmp/hpo.db"
    assert redact("mysql+pymysql://u@h/db?password=x&a=1") == "mysql+pymysql://u@h/db?password=***&a=1"
    assert password_of("postgresql://hpo@h/db") is None


def test_redact_text_masks_a_password_wherever_an_error_repeats_it() -> None:
    msg = f'connection to {URL} failed: password authentication for "s3cr%40t-pw"'
    out = redact_text(msg, URL)
    assert "s3cr%40t-pw" not in out and "hpo:***@db.example" in out


def test_the_stored_config_has_no_storage_url_and_a_redacted_mlflow_uri(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = StudyConfig(study="s", storage=URL, mlflow_uri=URL.replace("/hpo?", "/mlflow?"))
    stored = json.dumps(public_config(cfg))
    assert "s3cr" not in stored and stored.count("***") == 1
    # a process that reads the stored config gets the real URIs from its environment
    monkeypatch.setenv("OPTUNA_STORAGE", URL)
    monkeypatch.setenv("HPO_MLFLOW_URI", cfg.mlflow_uri or "")
    back = StudyConfig.model_validate_json(stored)
    assert back.storage_url == URL and back.mlflow_tracking_uri == cfg.mlflow_uri


def test_private_files_are_0600_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "w" / "config.json"
    old = os.umask(0)
    try:
        write_private(path, "{}")
        path.chmod(0o644)
        write_private(path, '{"a": 1}')
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == '{"a": 1}'


def test_server_storages_have_a_small_fixed_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """32 workers + their launcher at POOL_SIZE connections each fit PostgreSQL's default 100."""
    kw = engine_kwargs(URL)
    assert kw["pool_size"] == POOL_SIZE == 2 and kw["max_overflow"] == 0
    assert 33 * POOL_SIZE <= 100
    assert is_server_url(URL) and is_server_url("mysql+pymysql://u:p@h/db")
    assert not is_server_url("sqlite:///x.db") and not is_server_url("journal:x.log")
    assert heartbeat_settings(20, 60) == (20, 60)
    monkeypatch.setenv("HPO_HEARTBEAT_INTERVAL_S", "1")
    monkeypatch.setenv("HPO_HEARTBEAT_GRACE_S", "4")
    assert heartbeat_settings(20, 60) == (1, 4)


PASSWORDS = [
    "abc+/x=",  # base64-like: SQLAlchemy reads all of it as the password
    "p/a/t/h",
    "with:colons",
    "hash#tag",
    "per%cent",
    "pl+us=eq",
    "at@sign",  # a raw '@' (SQLAlchemy stops at it; everything up to the last '@' is masked)
    "s3cr%40t%2Fpw",  # percent-encoded '@' and '/'
    "all/@:%+=#of-them",
]


@pytest.mark.parametrize("pw", PASSWORDS)
@pytest.mark.parametrize(
    "template",
    [
        "postgresql://hpo:{pw}@db.example:5432/hpo?sslmode=require",
        "postgresql+psycopg://hpo:{pw}@db/hpo",
        "mysql+pymysql://root:{pw}@127.0.0.1/hpo",
        "http://user:{pw}@mlflow.example:5000",
    ],
)
def test_every_password_shape_is_masked(template: str, pw: str) -> None:
    url = template.format(pw=pw)
    shown = redact(url)
    assert shown == template.format(pw="***") and pw not in shown
    assert password_of(url) == pw and password_of(shown) is None and is_redacted(shown)
    message = f"could not connect to {url}: authentication failed for password {pw}"
    assert pw not in redact_text(message, url)
    assert pw not in redact_text(f"server said: {url}")  # a URL in text, no URL given


def test_the_decoded_password_is_masked_too() -> None:
    url = "postgresql://hpo:s3cr%40t%2Fpw@db/hpo"
    assert "s3cr@t/pw" not in redact_text('password "s3cr@t/pw" rejected', url)


def test_urls_without_a_password_are_unchanged() -> None:
    for url in ["sqlite:////tmp/a@b.db", "postgresql://hpo@db/hpo", "http://mlflow:5000/x", "journal.log"]:
        assert redact(url) == url and password_of(url) is None
