"""A worker that wakes to find its trial finished by another process (heartbeat, launcher) abandons it
quietly: nothing more is written on it, its MLflow run ends KILLED if still open, the loop goes on."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from hpo.config.study import StudyConfig, load_config
from hpo.progress import Progress
from hpo.run.bootstrap import start_study
from hpo.run.protocol import WorkerExit, WorkerId
from hpo.run.serial import run_one
from hpo.run.setup import build_objective, prepare
from hpo.run.worker import _trial_loop
from hpo.storage.study import storage_of
from hpo.tracking.tracker import NullTracker
from hpo.train.loop import EpochResult, TrainResult
from hpo.trial.context import TrialContext
from tests.support import CI_CONFIG

TAKEN = {"error": "heartbeat stale (failed by another process)"}


def config(out: Path) -> StudyConfig:
    return load_config(CI_CONFIG, {"output_dir": out, "mlflow": False, "n_trials": 10, "par": 1})


def take_over(ctx: TrialContext, url: str) -> dict[str, Any]:
    """What a launcher or another worker's heartbeat check does: FAIL the trial, through its own Study
    (its own storage object and connections, as in another process)."""
    other = optuna.load_study(study_name=ctx.trial.study.study_name, storage=url)
    storage = storage_of(other)
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(other.study_name), ctx.number
    )
    for key, value in TAKEN.items():
        storage.set_trial_user_attr(trial_id, key, value)
    storage.set_trial_state_values(trial_id, TrialState.FAIL)
    return dict(storage.get_trial(trial_id).user_attrs)


class FakeTrainer:
    """Training without a model: the first trial is taken over mid-training, then writes what training
    writes (``then``: an epoch's report, or a finished result and its records); later trials complete."""

    then = "report"
    url = ""  # the study's storage
    seen: dict[int, dict[str, Any]] = {}  # noqa: RUF012  trial number -> its attrs right after the takeover

    def __init__(self, *args: object) -> None:
        pass

    def __call__(self, ctx: TrialContext) -> TrainResult:
        epoch = EpochResult(0, 0.5, 0.5, 0.6, 0.1, 1, 1e-3)
        if not FakeTrainer.seen:
            FakeTrainer.seen[ctx.number] = take_over(ctx, FakeTrainer.url)
            if FakeTrainer.then == "report":
                ctx.trial.report(0.6, 0)
        return TrainResult(best_metric=0.6, best_epoch=0, history=[epoch])


@pytest.fixture
def fake_training(monkeypatch: pytest.MonkeyPatch) -> type[FakeTrainer]:
    monkeypatch.setattr("hpo.trial.objective.Trainer", FakeTrainer)
    FakeTrainer.seen = {}
    return FakeTrainer


@pytest.mark.parametrize("then", ["report", "complete"])
def test_the_worker_loop_abandons_a_trial_finished_by_another_process(
    tmp_path: Path,
    fake_training: type[FakeTrainer],
    then: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    fake_training.then = then
    cfg = config(tmp_path / "runs")
    fake_training.url = cfg.storage_url
    setup = prepare(cfg)
    study, _ = start_study(cfg, setup)
    with caplog.at_level(logging.INFO):
        assert _trial_loop(cfg, 2, WorkerId(slot=0)) == WorkerExit.RECYCLE
    (number, attrs) = next(iter(fake_training.seen.items()))
    trials = study.get_trials()
    assert trials[number].state == TrialState.FAIL
    assert trials[number].user_attrs == attrs  # nothing recorded after the takeover
    assert trials[number].values is None
    assert [t.state for t in trials[number + 1 :]] == [TrialState.COMPLETE]  # the loop went on
    lines = [r.getMessage() for r in caplog.records if f"trial {number}" in r.getMessage()]
    assert len(lines) == 1 and "abandon" in lines[0], [r.getMessage() for r in caplog.records]
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Cannot tell" not in err, err


class OpenRuns(NullTracker):
    """A tracker whose trial runs stay open until ended."""

    def __init__(self) -> None:
        self.open: dict[int, str] = {}
        self.ended: dict[str, str] = {}

    def start_trial(self, number: int, params: dict[str, Any], tags: dict[str, str] | None = None) -> str:
        self.open[number] = f"run-{number}"
        return self.open[number]

    def open_trial_runs(self) -> dict[int, str]:
        return dict(self.open)

    def end_trial(self, run_id: str | None, status: str, tags: dict[str, str] | None = None) -> None:  # type: ignore[override]
        self.open = {n: r for n, r in self.open.items() if r != run_id}
        self.ended[str(run_id)] = status


def test_its_mlflow_run_ends_killed(tmp_path: Path, fake_training: type[FakeTrainer]) -> None:
    cfg = config(tmp_path / "runs")
    fake_training.url = cfg.storage_url
    setup = prepare(cfg)
    study, _ = start_study(cfg, setup)
    tracker = OpenRuns()
    objective = build_objective(cfg, Progress(io.StringIO(), live=False), setup=setup, tracker=tracker)
    last = run_one(study, objective)
    assert last.state == TrialState.FAIL and last.user_attrs["error"] == TAKEN["error"]
    assert tracker.ended == {f"run-{last.number}": "KILLED"} and not tracker.open
