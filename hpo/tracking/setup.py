"""The MLflow experiment and parent run of a study: get, or create exactly once.

The process that starts a study creates them under its setup lock (a file lock per host and, with a server
storage, a lock inside the database: ``hpo.run.bootstrap.setup_lock``), so starters on every host take
turns. Should two creators still race (a shared MLflow with storages that share no lock), both elect the
oldest parent run (start time, then run id) and a creator whose own run lost deletes it; an experiment
created by someone else in between is read back instead of failing.
"""

from __future__ import annotations

from typing import Any

PARENT_TAG = "hpo.parent"


def get_or_create_experiment(
    client: Any, name: str, location: str | None, create: bool, tags: dict[str, str] | None = None
) -> str | None:
    """The experiment id for study ``name``; None when it is missing and ``create`` is False. A creator
    sets ``tags`` on it, also on an experiment made before they existed."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        missing = {k: v for k, v in (tags or {}).items() if k not in exp.tags} if create else {}
        for key, value in missing.items():
            client.set_experiment_tag(exp.experiment_id, key, value)
        return str(exp.experiment_id)
    if not create:
        return None
    try:
        return str(client.create_experiment(name, artifact_location=location, tags=tags))
    except Exception:  # RESOURCE_ALREADY_EXISTS: another host created it just now
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return str(exp.experiment_id)


def parent_runs(client: Any, experiment_id: str) -> list[Any]:
    """Every parent run of the experiment (normally one), oldest first."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{PARENT_TAG}` = 'true'", max_results=100)
    return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))


def get_or_create_parent(
    client: Any, experiment_id: str, study: str, create: bool
) -> tuple[str | None, bool]:
    """(parent run id, created by this call); (None, False) when it is missing and ``create`` is False."""
    runs = parent_runs(client, experiment_id)
    if runs:
        return str(runs[0].info.run_id), False
    if not create:
        return None, False
    mine = client.create_run(
        experiment_id, run_name=f"study:{study}", tags={PARENT_TAG: "true", "hpo.storage.study": study}
    )
    mine_id = str(mine.info.run_id)
    winner = str(parent_runs(client, experiment_id)[0].info.run_id)
    if winner != mine_id:  # another creator got there first: one parent run per study
        client.delete_run(mine_id)
        return winner, False
    return mine_id, True
