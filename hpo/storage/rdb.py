"""Server databases (PostgreSQL, MySQL) as Optuna storage shared by many workers on many hosts.

- **Bounded connections.** A process holds one storage object per URL (cached) whose SQLAlchemy pool has
  ``POOL_SIZE`` (2) connections and no overflow: the trial loop's thread and Optuna's heartbeat thread. 32
  workers plus their launcher stay at 66 connections, under PostgreSQL's default ``max_connections=100``.
- **Safe first start.** Optuna creates its tables when a storage is first opened; several processes doing it
  at once race (duplicate tables / version rows). On PostgreSQL the creation runs under a session advisory
  lock (``db_lock``), on MySQL under ``GET_LOCK``; any remaining race is retried.
- ``db_lock`` also serialises study setup (study, fingerprint, MLflow parent run) across hosts.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import time
from collections.abc import Iterator
from typing import Any

from hpo.errors import StorageError
from hpo.redact import redact

DRIVERS = "postgresql+psycopg://, mysql+pymysql:// or sqlite:///PATH"  # installed with hpo
POOL_SIZE = 2  # connections per process and storage URL: the trial loop + the heartbeat thread
CREATE_TRIES = 5
_CACHE: dict[str, Any] = {}


def is_server_url(url: str) -> bool:
    """PostgreSQL or MySQL (any driver): a database server several hosts share."""
    return url.startswith(("postgresql", "postgres://", "mysql"))


def check_driver(url: str) -> None:
    """A StorageError naming the problem when SQLAlchemy does not know the dialect of ``url`` or its driver
    is not installed (before any connection: it is no server problem)."""
    from sqlalchemy.engine.url import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
        scheme = parsed.drivername
        dialect = parsed.get_dialect()
    except NoSuchModuleError as exc:
        scheme = url.split("://", 1)[0]
        raise StorageError(
            f"unknown database driver '{scheme}' in storage {redact(url)}", f"use {DRIVERS}"
        ) from exc
    except ArgumentError:
        return  # not an URL SQLAlchemy reads: the storage says so
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        backend = parsed.get_backend_name()
        use = {"mysql": "mysql+pymysql://", "postgresql": "postgresql+psycopg://"}.get(backend, DRIVERS)
        raise StorageError(
            f"the driver '{dialect.driver}' of {scheme}:// is not installed (storage {redact(url)}: "
            f"{str(exc).splitlines()[0][:120]})",
            f"use {use} (installed with hpo), or install that driver",
        ) from exc


def engine_kwargs(url: str) -> dict[str, Any]:
    """SQLAlchemy engine settings for a server storage: a small fixed pool, liveness checks, timeouts."""
    kwargs: dict[str, Any] = {
        "pool_size": POOL_SIZE,
        "max_overflow": 0,
        "pool_timeout": 120,
        "pool_pre_ping": True,
        "pool_recycle": 1800,
    }
    kwargs["connect_args"] = {"connect_timeout": 10}  # psycopg and PyMySQL both take it
    return kwargs


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little", signed=True)


@contextlib.contextmanager
def db_lock(url: str, name: str, timeout_s: float = 600.0) -> Iterator[None]:
    """Hold a named lock inside the database server at ``url`` (PostgreSQL advisory lock, MySQL GET_LOCK):
    every host that uses the database takes turns. A no-op for other URLs (file locks cover those)."""
    if not is_server_url(url):
        yield
        return
    check_driver(url)
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    engine = sa.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as conn:
            if url.startswith("postgres"):
                conn.execute(sa.text(f"SET lock_timeout = '{int(timeout_s * 1000)}ms'"))
                conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _lock_key(name)})
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _lock_key(name)})
                    conn.commit()
            else:
                got = conn.execute(
                    sa.text("SELECT GET_LOCK(:n, :t)"), {"n": f"hpo:{name}"[:64], "t": int(timeout_s)}
                ).scalar()
                if got != 1:
                    raise TimeoutError(f"lock {name} held for {timeout_s:.0f}s")
                try:
                    yield
                finally:
                    conn.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": f"hpo:{name}"[:64]})
    finally:
        engine.dispose()


def server_storage(url: str, heartbeat: dict[str, Any]) -> Any:
    """This process's Optuna storage for the server at ``url`` (one per URL: bounded connections)."""
    from hpo.storage.retry import open_rdb  # waits out outages (restarts, failovers)

    cached = _CACHE.get(url)
    if cached is not None:
        return cached
    for attempt in range(CREATE_TRIES):
        try:
            with db_lock(url, "optuna-schema"):
                storage = open_rdb(url, engine_kwargs=engine_kwargs(url), **heartbeat)
            break
        except ImportError:
            raise
        except Exception as exc:  # the first-run table race that a lock did not cover: try again
            if attempt == CREATE_TRIES - 1 or not _is_race(exc):
                raise
            time.sleep(0.2 * (attempt + 1) + random.random() * 0.3)
    _CACHE[url] = storage
    return storage


def _is_race(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(s in text for s in ("already exists", "duplicate", "integrity", "deadlock", "unique"))


def heartbeat_settings(interval_s: int, grace_s: int) -> tuple[int, int]:
    """Heartbeat interval and grace period: the defaults, or HPO_HEARTBEAT_INTERVAL_S / HPO_HEARTBEAT_GRACE_S
    (tests and clusters with long storage hiccups tune them)."""
    interval = int(os.environ.get("HPO_HEARTBEAT_INTERVAL_S") or interval_s)
    grace = int(os.environ.get("HPO_HEARTBEAT_GRACE_S") or grace_s)
    return max(1, interval), max(interval + 1, grace)
