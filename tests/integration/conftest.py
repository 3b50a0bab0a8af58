"""Fixtures of the integration tier: fresh PostgreSQL databases (tests/postgres.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.postgres import fresh_database


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (the Optuna storage of a test)."""
    yield from fresh_database()


@pytest.fixture
def pg_mlflow_url() -> Iterator[str]:
    """A second fresh database (a shared MLflow backend)."""
    yield from fresh_database()
