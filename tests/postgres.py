"""A fresh PostgreSQL database per test on the server `.ci/run` starts (URL in HPO_TEST_POSTGRES_URL).

Without that variable the tests that need it skip with the reason, unless HPO_REQUIRE_POSTGRES=1 (set by
`.ci/run`): then they fail, so CI never passes by skipping them. Locally:
`scripts/pg_server.sh start /tmp/hpo-pg` prints a URL to export (and HPO_TEST_POSTGRES_DIR=/tmp/hpo-pg lets
the storage-outage tests restart it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import NoReturn

import pytest

PG_ENV = "HPO_TEST_POSTGRES_URL"
PASSWORD_IN_URL = "hpo-secret-pw"  # scripts/pg_server.sh's default; the secrets test greps for it


def server_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        _missing(f"{PG_ENV} is not set: no PostgreSQL server (.ci/run starts one; see tests/postgres.py)")
    return str(url)


def _missing(reason: str) -> NoReturn:
    """Skip the test, or fail it where the server is required (``HPO_REQUIRE_POSTGRES=1``, as in CI)."""
    if os.environ.get("HPO_REQUIRE_POSTGRES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _with_db(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


def fresh_database() -> Iterator[str]:
    """Create an empty database on the test server, yield its URL, drop it afterwards."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    base = server_url()
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(_with_db(base, "postgres"), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield _with_db(base, name)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


DIR_ENV = "HPO_TEST_POSTGRES_DIR"  # the server's folder (scripts/pg_server.sh DIR): outage tests restart it


def server_dir() -> str:
    """The folder of the test server (``.ci/run`` exports it), for ``scripts/pg_server.sh restart``."""
    server_url()  # skip or fail first when there is no server at all
    path = os.environ.get(DIR_ENV)
    if not path:
        _missing(f"{DIR_ENV} is not set: the tests cannot restart the PostgreSQL server (see .ci/run)")
    return str(path)
