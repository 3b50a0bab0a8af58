"""The MLflow parent run of a study is created exactly once, even when two creators race."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hpo.tracking import setup as tracking_setup
from hpo.tracking.setup import PARENT_TAG, get_or_create_experiment, get_or_create_parent, parent_runs


def test_a_creator_that_raced_deletes_its_duplicate_and_uses_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = get_or_create_experiment(client, "s", (tmp_path / "art").as_uri(), create=True)
    assert exp is not None
    assert get_or_create_experiment(client, "s", None, create=False) == exp
    first, created = get_or_create_parent(client, exp, "s", create=True)
    assert created and first is not None
    # another host's creator looked before `first` was visible: it creates a second parent run, then sees both
    real = tracking_setup.parent_runs
    calls: list[int] = []

    def late(c: Any, e: str) -> list[Any]:
        calls.append(1)
        return [] if len(calls) == 1 else real(c, e)

    monkeypatch.setattr(tracking_setup, "parent_runs", late)
    winner, created = get_or_create_parent(client, exp, "s", create=True)
    monkeypatch.undo()
    assert winner == first and not created
    live = parent_runs(client, exp)
    assert [r.info.run_id for r in live] == [first]
    assert all(r.data.tags[PARENT_TAG] == "true" for r in live)
    assert get_or_create_parent(client, exp, "s", create=False) == (first, False)
    assert get_or_create_parent(client, "0", "other", create=False) == (None, False)
