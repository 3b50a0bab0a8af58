"""Resuming a study: its fingerprint (hpo.run.fingerprint) and the trials of processes that are gone."""

from __future__ import annotations

import os
import shutil
import socket
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import psutil
import pytest
from optuna.trial import FrozenTrial, TrialState
from typer.testing import CliRunner

from hpo.commands import app
from hpo.config.study import StudyConfig, load_config
from hpo.errors import ConfigError
from hpo.paths import SAMPLE_DATA_DIR
from hpo.run.bootstrap import fail_dead_trials, open_for_worker, start_study
from hpo.run.fingerprint import CHANGES_ATTR, check_resume, diff
from hpo.run.liveness import UNOWNED_AFTER
from hpo.run.setup import prepare
from hpo.storage.study import storage_of
from hpo.tracking.tracker import NullTracker
from hpo.trial import keys as K
from hpo.trial.outcomes import close_stale_runs
from tests.support import CI_CONFIG


def config(out: Path, **over: object) -> StudyConfig:
    return load_config(CI_CONFIG, {"output_dir": out, "mlflow": False, **over})


@pytest.fixture
def started(tmp_path: Path) -> tuple[Path, optuna.Study]:
    """A study created by a start (no trial run yet)."""
    out = tmp_path / "runs"
    cfg = config(out)
    study, _ = start_study(cfg, prepare(cfg))
    return out, study


def tune_again(out: Path, *extra: str) -> tuple[int, str]:
    args = ["tune", "--config", str(CI_CONFIG), "--output-dir", str(out), "--no-mlflow", "--n-trials", "1"]
    result = CliRunner().invoke(app, [*args, *extra])
    return result.exit_code, result.output


def one_error(code: int, out: str) -> str:
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in out, out
    return errors[0]


def test_space_change_on_resume_is_an_error_naming_the_field(
    started: tuple[Path, optuna.Study], tmp_path: Path
) -> None:
    out, _ = started
    changed = tmp_path / "changed.yaml"
    changed.write_text(CI_CONFIG.read_text().replace("batch_size: [16, 32]", "batch_size: [8, 16]"))
    result = CliRunner().invoke(
        app, ["tune", "--config", str(changed), "--output-dir", str(out), "--no-mlflow", "--n-trials", "1"]
    )
    line = one_error(result.exit_code, result.output)
    assert "space.batch_size" in line and "new --study" in line


def test_model_change_on_resume_is_an_error_naming_the_field(started: tuple[Path, optuna.Study]) -> None:
    out, _ = started
    line = one_error(*tune_again(out, "--models", "hpo-tiny-bert,all-MiniLM-L6-v2"))
    assert "models was ['hpo-tiny-bert']" in line


def test_data_change_on_resume_is_an_error_naming_the_field(
    started: tuple[Path, optuna.Study], tmp_path: Path
) -> None:
    out, _ = started
    data = tmp_path / "data"
    shutil.copytree(SAMPLE_DATA_DIR, data)
    csv = data / "redsm5_posts.csv"
    csv.write_text(csv.read_text().replace("a", "e", 1))
    line = one_error(*tune_again(out, "--data-dir", str(data)))
    assert "data files" in line and "redsm5_posts.csv" in line


def test_seed_change_on_resume_is_an_error(started: tuple[Path, optuna.Study]) -> None:
    out, _ = started
    assert "seed was 3, now 4" in one_error(*tune_again(out, "--seed", "4"))


def test_compatible_changes_need_allow_changes_and_are_recorded(started: tuple[Path, optuna.Study]) -> None:
    out, study = started
    cfg = config(out, epochs=5)
    setup = prepare(cfg)
    with pytest.raises(ConfigError, match="--allow-changes"):
        check_resume(study, cfg, setup, allow_changes=False)
    changes = check_resume(study, cfg, setup, allow_changes=True)
    assert [c.field for c in changes] == ["epochs"]
    assert study.user_attrs[CHANGES_ATTR][0]["new"] == 5
    assert check_resume(study, cfg, setup, allow_changes=False) == []  # now the study's definition


def test_only_a_widened_float_range_is_compatible() -> None:
    old = {"space": {"learning_rate": [1e-4, 1e-3], "batch_size": [16, 32]}}
    wider = diff(old, {"space": {"learning_rate": [1e-5, 1e-3], "batch_size": [16, 32]}})
    narrower = diff(old, {"space": {"learning_rate": [2e-4, 1e-3], "batch_size": [16, 32]}})
    choices = diff(old, {"space": {"learning_rate": [1e-4, 1e-3], "batch_size": [16, 64]}})
    assert [c.compatible for c in wider + narrower + choices] == [True, False, False]


def test_a_space_field_added_later_at_its_default_is_no_change() -> None:
    """Studies made before the LoRA fields resume; a non-default value of a new field is still a change."""
    old = {"space": {"batch_size": [16, 32]}}
    assert diff(old, {"space": {"batch_size": [16, 32], "lora_r": [8, 16, 32]}}) == []
    (change,) = diff(old, {"space": {"batch_size": [16, 32], "lora_r": [4]}})
    assert change.field == "space.lora_r" and not change.compatible


def _dead_pid() -> int:
    pid = 4_194_000
    while psutil.pid_exists(pid):
        pid += 1
    return pid


def _running_trial(study: optuna.Study, pid: int) -> int:
    trial = study.ask()
    trial.set_user_attr(K.HOST, socket.gethostname())
    trial.set_user_attr(K.PID, pid)
    return trial.number


def test_a_start_fails_running_trials_whose_process_is_gone_and_retries_them(
    started: tuple[Path, optuna.Study],
) -> None:
    _, study = started
    dead = _running_trial(study, _dead_pid())
    alive = _running_trial(study, os.getpid())
    assert fail_dead_trials(study, NullTracker()) == [dead]
    states = {t.number: t.state for t in study.trials}
    assert states[dead] == TrialState.FAIL and states[alive] == TrialState.RUNNING
    assert [t.state for t in study.trials].count(TrialState.WAITING) == 1  # one retry enqueued


def _unowned_trial(study: optuna.Study, age: timedelta) -> int:
    """A RUNNING trial created ``age`` ago that never recorded a process (killed inside Optuna's ask)."""
    storage = storage_of(study)
    template = FrozenTrial(
        number=-1,
        state=TrialState.RUNNING,
        value=None,
        values=None,
        datetime_start=datetime.now() - age,
        datetime_complete=None,
        params={},
        distributions={},
        user_attrs={},
        system_attrs={},
        intermediate_values={},
        trial_id=-1,
    )
    study_id = storage.get_study_id_from_name(study.study_name)
    trial_id = storage.create_new_trial(study_id, template_trial=template)
    return storage.get_trial_number_from_id(trial_id)


def test_a_start_fails_a_running_trial_that_never_recorded_its_process(
    started: tuple[Path, optuna.Study],
) -> None:
    _, study = started
    old = _unowned_trial(study, UNOWNED_AFTER + timedelta(minutes=1))
    new = _unowned_trial(study, timedelta(seconds=5))  # may be starting right now, on any host
    assert fail_dead_trials(study, NullTracker()) == [old]
    trials = {t.number: t for t in study.trials}
    assert trials[old].state == TrialState.FAIL and trials[new].state == TrialState.RUNNING
    assert trials[old].user_attrs[K.ERROR] == "its process never recorded itself"


def test_the_next_start_cleans_up_what_a_killed_run_left_running(started: tuple[Path, optuna.Study]) -> None:
    """The promise at the start itself (not only the helper): a run killed mid-trial (kill -9, power loss)
    leaves a RUNNING trial; the next ``hpo tune`` start fails it and enqueues its retry before any trial."""
    out, study = started
    dead = _running_trial(study, _dead_pid())
    cfg = config(out)
    again, _ = start_study(cfg, prepare(cfg))
    states = {t.number: t.state for t in again.trials}
    assert states[dead] == TrialState.FAIL
    assert [t.state for t in again.trials].count(TrialState.WAITING) == 1


class OpenRuns(NullTracker):
    def __init__(self, runs: dict[int, str]) -> None:
        self.runs, self.ended = runs, {}

    def open_trial_runs(self) -> dict[int, str]:
        return self.runs

    def end_trial(self, run_id: str | None, status: str, tags: dict[str, str] | None = None) -> None:  # type: ignore[override]
        self.ended[run_id] = status


def test_mlflow_runs_of_finished_trials_get_their_status(started: tuple[Path, optuna.Study]) -> None:
    _, study = started
    failed, pruned, running = study.ask(), study.ask(), study.ask()
    study.tell(failed, state=TrialState.FAIL)
    study.tell(pruned, state=TrialState.PRUNED)
    tracker = OpenRuns({failed.number: "a", pruned.number: "b", running.number: "c"})
    assert close_stale_runs(study, tracker) == 2
    assert tracker.ended == {"a": "FAILED", "b": "KILLED"}


def test_a_worker_joined_with_another_space_is_refused(started: tuple[Path, optuna.Study]) -> None:
    out, _ = started
    cfg = config(out, space={"batch_size": [8]})
    with pytest.raises(ConfigError, match=r"space\.batch_size"):
        open_for_worker(cfg, prepare(cfg))


def test_a_worker_joined_with_other_epochs_runs_and_records_nothing(
    started: tuple[Path, optuna.Study],
) -> None:
    out, study = started
    cfg = config(out, epochs=5)
    open_for_worker(cfg, prepare(cfg))
    assert CHANGES_ATTR not in study.user_attrs
