"""`hpo tune` says what it starts (study, storage without its password, par, target) before its slow setup
(importing torch, preparing data, opening the storage)."""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from hpo.commands import app
from hpo.errors import HpoError
from tests.support import CI_CONFIG


class _SlowSetupFails(importlib.abc.MetaPathFinder):
    """Importing hpo.run.tune (torch and the rest of the setup) fails: what was printed before it?"""

    def find_spec(self, name: str, path: object, target: object = None) -> None:
        if name == "hpo.run.tune":
            raise HpoError("setup failed here")
        return None


@pytest.fixture
def failing_setup(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delitem(sys.modules, "hpo.run.tune", raising=False)
    finder = _SlowSetupFails()
    sys.meta_path.insert(0, finder)
    yield
    sys.meta_path.remove(finder)


def test_the_first_line_comes_before_the_slow_setup(failing_setup: None) -> None:
    storage = "postgresql+psycopg://hpo:pw%2F%40x@db.example:5432/hpo"
    res = CliRunner().invoke(
        app, ["tune", "--config", str(CI_CONFIG), "--par", "2", "--n-trials", "4", "--storage", storage]
    )
    assert res.exit_code == 2 and "setup failed here" in res.output
    first = res.output.splitlines()[0]
    assert first.startswith("study ci-tiny |") and "par 2" in first and "target 4 trials" in first
    assert "storage postgresql+psycopg://hpo:***@db.example:5432/hpo" in first and "pw" not in first
