"""OOM report and trial filters against a real Optuna SQLite study and a real MLflow SQLite backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState, create_trial

from hpo.config.study import TrialConfig
from hpo.device.oom import OomRecord
from hpo.errors import ConfigError, StorageError
from hpo.results.oom_report import (
    ROW_KEYS,
    oom_rows_from_mlflow,
    oom_rows_from_optuna,
    render_oom_table,
    summarize,
)
from hpo.results.trials import filter_trials

STUDY = "criteria-oom"
# (model, batch_size, max_length, epoch, step)
OOMS = [("bert-large", 32, 512, 0, 0), ("bert-large", 16, 384, 1, 4), ("deberta-v3-base", 64, 256, 0, 2)]


def _record(model: str, b: int, length: int, epoch: int, step: int) -> OomRecord:
    cfg = TrialConfig(
        model=model, learning_rate=2e-5, batch_size=b, grad_accum=2, max_length=length, precision="fp16"
    )
    exc = RuntimeError("CUDA out of memory. Tried to allocate 1.00 GiB.\nmore")
    return OomRecord.from_trial_config(
        cfg, exc, estimated_peak_gb=25.0, measured_peak_gb=23.5, epoch=epoch, step=step
    )


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path_factory.mktemp('optuna') / 'hpo.db'}"
    s = optuna.create_study(storage=url, study_name=STUDY, direction="maximize")
    s.add_trial(create_trial(state=TrialState.COMPLETE, value=0.7))  # 0
    for rec in (_record(*o) for o in OOMS):  # 1, 2, 3
        s.add_trial(
            create_trial(
                state=TrialState.PRUNED,
                user_attrs={"oom": True, "oom_config": rec.to_dict(), "pruned_reason": "oom"},
            )
        )
    s.add_trial(
        create_trial(
            state=TrialState.PRUNED,
            user_attrs={  # 4
                "pruned_reason": "memory_estimate",
                "estimated_peak_gb": 90.0,
            },
        )
    )

    def objective(trial: optuna.Trial) -> float:  # 5: pruned by early stopping, through a real run
        trial.report(0.5, step=0)
        trial.set_user_attr("pruned_reason", "early_stop")
        raise optuna.TrialPruned()

    s.optimize(objective, n_trials=1)
    s.add_trial(create_trial(state=TrialState.FAIL))  # 6
    return optuna.load_study(study_name=STUDY, storage=url)  # read back through a fresh storage


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    where = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{where / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(STUDY, artifact_location=(where / "artifacts").as_uri())
    parent = client.create_run(exp_id, run_name=STUDY)
    for number, o in enumerate(OOMS, start=1):
        rec = _record(*o)
        run = client.create_run(
            exp_id,
            tags={"mlflow.parentRunId": parent.info.run_id, "oom": "true", "trial_number": str(number)},
        )
        rid = run.info.run_id
        client.log_param(rid, "oom_error", True)
        client.log_param(rid, "learning_rate", 2e-5)
        for key, value in rec.to_dict().items():
            client.log_param(rid, f"oom_{key}", value)
        client.log_text(rid, json.dumps(rec.to_dict()), "oom_config.json")
        client.set_terminated(rid, "FAILED")
    ok = client.create_run(exp_id, tags={"trial_number": "0"})
    client.log_param(ok.info.run_id, "oom_error", False)
    client.set_terminated(ok.info.run_id, "FINISHED")
    client.set_terminated(parent.info.run_id, "FINISHED")
    return uri


def _expected_rows() -> list[dict[str, Any]]:
    rows = []
    for number, o in enumerate(OOMS, start=1):
        rec = _record(*o).to_dict()
        rows.append({"number": number, **{k: rec[k] for k in ROW_KEYS[1:]}})
    return rows


def test_rows_from_optuna(study: optuna.Study) -> None:
    rows = oom_rows_from_optuna(study)
    assert rows == _expected_rows()
    assert rows[0]["error_head"] == "CUDA out of memory. Tried to allocate 1.00 GiB."


def test_rows_from_mlflow_match_optuna(study: optuna.Study, mlflow_uri: str) -> None:
    assert oom_rows_from_mlflow(mlflow_uri, STUDY) == oom_rows_from_optuna(study)
    with pytest.raises(StorageError):
        oom_rows_from_mlflow(mlflow_uri, "no-such-study")


def test_summarize_and_render(study: optuna.Study) -> None:
    rows = oom_rows_from_optuna(study)
    summary = summarize(rows)
    assert summary == {
        "count": 3,
        "models": ["bert-large", "deberta-v3-base"],
        "smallest_failing": {
            "bert-large": {"batch_size": 16, "max_length": 384},
            "deberta-v3-base": {"batch_size": 64, "max_length": 256},
        },
    }
    text = render_oom_table(rows, summary)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["trial", "model", "batch"]
    assert len(lines) == 1 + 3 + 2 and lines[1].split()[:3] == ["1", "bert-large", "32"]
    assert "23.50" in lines[1] and "CUDA out of memory" in lines[1]
    assert lines[-1] == (
        "3 OOM trials; models: bert-large, deberta-v3-base; smallest failing: "
        "bert-large 16x384, deberta-v3-base 64x256"
    )
    assert render_oom_table([], summarize([])) == "no OOM trials"


@pytest.mark.parametrize(
    ("state", "reason", "numbers"),
    [
        (None, None, [0, 1, 2, 3, 4, 5, 6]),
        ("all", None, [0, 1, 2, 3, 4, 5, 6]),
        ("complete", None, [0]),
        ("PRUNED", None, [1, 2, 3, 4, 5]),
        ("fail", None, [6]),
        ("running", None, []),
        ("pruned", "oom", [1, 2, 3]),
        (None, "memory_estimate", [4]),
        ("all", "early_stop", [5]),
    ],
)
def test_filter_trials(
    study: optuna.Study, state: str | None, reason: str | None, numbers: list[int]
) -> None:
    trials = study.get_trials(deepcopy=False)
    assert [t.number for t in filter_trials(trials, state, reason)] == numbers


@pytest.mark.parametrize(("state", "reason"), [("finished", None), (None, "timeout"), ("complete", "oom")])
def test_filter_trials_rejects_unknown(study: optuna.Study, state: str | None, reason: str | None) -> None:
    with pytest.raises(ConfigError):
        filter_trials(study.get_trials(deepcopy=False), state, reason)


def test_no_oom_trials(tmp_path: Path) -> None:
    s = optuna.create_study(storage=f"sqlite:///{tmp_path / 'empty.db'}", study_name="empty")
    s.add_trial(create_trial(state=TrialState.COMPLETE, value=1.0))
    assert oom_rows_from_optuna(s) == [] and summarize([])["count"] == 0
