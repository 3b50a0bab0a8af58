"""`hpo studies` on a real SQLite storage, and read-only commands that never create a storage."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from typer.testing import CliRunner

from hpo.commands import app
from hpo.storage.study import AGENT_ATTR, BASELINE_ATTR, CONFIG_ATTR
from hpo.trial import keys as K

runner = CliRunner()
LR = FloatDistribution(1e-6, 1e-3, log=True)


def _trial(
    state: TrialState, value: float | None = None, reason: str | None = None
) -> optuna.trial.FrozenTrial:
    attrs = {K.PRUNED_REASON: reason} if reason else {}
    return create_trial(
        state=state, value=value, params={"lr": 1e-4}, distributions={"lr": LR}, user_attrs=attrs
    )


@pytest.fixture
def storage(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    one = optuna.create_study(study_name="criteria-a", storage=url, direction="maximize")
    one.set_user_attr(AGENT_ATTR, "criteria")
    one.set_user_attr(BASELINE_ATTR, {"metric": "macro_f1", "name": "majority", "value": 0.3})
    for t in (
        _trial(TrialState.COMPLETE, 0.61234567),
        _trial(TrialState.COMPLETE, 0.5),
        _trial(TrialState.PRUNED, reason=K.REASON_OOM),
        _trial(TrialState.PRUNED, reason=K.REASON_OOM),
        _trial(TrialState.PRUNED, reason=K.REASON_EARLY_STOP),
        _trial(TrialState.FAIL),
    ):
        one.add_trial(t)
    two = optuna.create_study(study_name="trade-off", storage=url, directions=["maximize", "minimize"])
    two.set_user_attr(CONFIG_ATTR, {"objectives": ["macro_f1", "peak_memory"]})
    for values in ([0.6, 3.0], [0.5, 1.0], [0.4, 2.0]):  # the last is dominated by the second
        two.add_trial(create_trial(values=values, params={}, distributions={}))
    optuna.create_study(study_name="empty", storage=url)
    return url


def test_the_table_counts_trials_by_outcome_and_names_the_best(storage: str) -> None:
    res = runner.invoke(app, ["studies", "--storage", storage])
    assert res.exit_code == 0, res.output
    head, *rows = res.output.strip().splitlines()
    assert head.split()[:8] == ["study", "agent", "complete", "pruned", "oom", "fail", "running", "best"]
    by_name = {r.split()[0]: r for r in rows}
    assert set(by_name) == {"criteria-a", "trade-off", "empty"}
    assert by_name["criteria-a"].split()[1:8] == ["criteria", "2", "3", "2", "1", "0", "macro_f1"]
    assert "macro_f1 0.6123" in by_name["criteria-a"]
    assert "front of 2 (macro_f1, peak_memory)" in by_name["trade-off"]
    assert by_name["empty"].split()[1:8] == ["-", "0", "0", "0", "0", "0", "-"]
    assert rows[-1].startswith("empty")  # no activity: last


def test_json_has_every_field_at_full_precision(storage: str) -> None:
    res = runner.invoke(app, ["studies", "--storage", storage, "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["study"]: r for r in json.loads(res.output)}
    a = rows["criteria-a"]
    assert (a["complete"], a["pruned"], a["pruned_oom"], a["fail"], a["trials"]) == (2, 3, 2, 1, 6)
    assert a["best"] == {"metric": "macro_f1", "value": 0.61234567}
    assert a["last_activity"] is not None and a["agent"] == "criteria"
    assert rows["trade-off"]["best"] == {"objectives": ["macro_f1", "peak_memory"], "front_size": 2}
    assert (
        rows["empty"]["best"] == {"metric": "value", "value": None} and rows["empty"]["last_activity"] is None
    )


def test_a_storage_without_studies_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    optuna.delete_study(study_name="x", storage=optuna.create_study(study_name="x", storage=url)._storage)
    res = runner.invoke(app, ["studies", "--storage", url])
    assert res.exit_code == 0 and res.output.startswith("no studies in sqlite:///"), res.output
    assert json.loads(runner.invoke(app, ["studies", "--storage", url, "--json"]).output) == []


READ_COMMANDS = [
    ["studies"],
    ["trials", "--study", "x"],
    ["best", "--study", "x"],
    ["oom", "--study", "x"],
    ["oom", "--study", "x", "--source", "mlflow"],
    ["report", "--study", "x"],
    ["worker", "--study", "x"],
]


@pytest.mark.parametrize("args", READ_COMMANDS, ids=lambda a: " ".join(a[:1] + a[3:]))
def test_read_commands_never_create_a_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPTUNA_STORAGE", raising=False)
    (tmp_path / "runs").mkdir()  # the default --output-dir exists, its databases do not
    res = runner.invoke(app, args)
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert res.exit_code == 2 and len(errors) == 1, res.output
    assert str(tmp_path / "runs") in errors[0] and "--output-dir" in errors[0]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["runs"]  # nothing written: no hpo.db, no report
