"""Running a study's trials in this process, one at a time, until it has its target of finished trials."""

from __future__ import annotations

import contextlib
import os
import time

import optuna
from optuna.trial import TrialState

from hpo.config.study import StudyConfig
from hpo.errors import HpoError
from hpo.lifecycle import check_stop, signal_of, stop_on_signals, stops_held, stops_released
from hpo.progress import Progress
from hpo.redact import redact
from hpo.run.bootstrap import start_study
from hpo.run.deaths import FailureStreak
from hpo.run.report import TuneReport, finish, finished_by, report_path
from hpo.run.setup import build_objective, prepare
from hpo.run.study_progress import study_state
from hpo.storage.dbcheck import is_disk_full
from hpo.storage.retry import down_error
from hpo.storage.study import fail_trial, finished_count, seed_sampler, trial_by_number
from hpo.trial import keys as K
from hpo.trial.context import TrialTakenOver
from hpo.trial.objective import Objective

MAX_CONSECUTIVE_FAILURES = 5


def run_one(study: optuna.Study, objective: Objective) -> optuna.trial.FrozenTrial:
    """Run one trial (errors become FAIL trials, each with its ``error``) and report how it ended."""

    def recorded(trial: optuna.Trial) -> float | tuple[float, ...]:
        try:
            with stops_released():  # a stop held while Optuna created the trial raises in the objective
                return objective(trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:  # raised before the trial's own outcome was written (sampling, estimate)
            _record_error(trial, objective, exc)
            raise

    try:
        with stops_held():  # a signal never cuts Optuna's ask or tell in half: no trial left RUNNING unowned
            study.optimize(recorded, n_trials=1, catch=(Exception,), gc_after_trial=True)
    except TrialTakenOver:  # finished by another process meanwhile: abandoned (the objective said so)
        return trial_by_number(study, objective.last_number)
    last = trial_by_number(study, objective.last_number)  # this process's trial (others may run too)
    note = last.user_attrs.get(K.PRUNED_REASON) or last.user_attrs.get(K.ERROR) or ""
    objective.progress.trial_finished(
        last.number, last.state.name.lower(), last.values[0] if last.values else None, str(note)
    )
    return last


def _record_error(trial: optuna.Trial, objective: Objective, exc: Exception) -> None:
    """Give a failing trial its ``error`` (type and first line) when nothing recorded one yet."""
    if objective.disk_full or K.ERROR in trial.user_attrs or K.FATAL_ERROR in trial.user_attrs:
        return
    head = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    with contextlib.suppress(Exception):  # the storage may not take it: Optuna still records FAIL
        trial.set_user_attr(K.ERROR, f"{type(exc).__name__}: {head}" if head else type(exc).__name__)


def run_trials(study: optuna.Study, objective: Objective, target: int, timeout: float | None) -> str:
    """Run trials one at a time until ``target`` finished trials; returns why it stopped. Trials failing the
    same way again and again raise RepeatedFailureError (hpo.run.deaths.FailureStreak)."""
    start, streak = time.monotonic(), FailureStreak(MAX_CONSECUTIVE_FAILURES)
    objective.progress.study(study_state(study, target))
    while True:
        check_stop()
        running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        if finished_count(study) + running >= target:  # trials of other processes count: no overshoot
            break
        if timeout is not None and time.monotonic() - start >= timeout:
            return "timeout"
        last = run_one(study, objective)
        objective.progress.study(study_state(study, target))
        if objective.poisoned:
            return "fatal CUDA error: this process stopped (a launcher replaces it)"
        if objective.disk_full:
            raise DiskFull(last.user_attrs.get(K.ERROR, "No space left on device"))
        if streak.add(last.state == TrialState.FAIL, str(last.user_attrs.get(K.ERROR, ""))):
            raise streak.error()
    if finished_count(study) >= target:
        return "target reached"
    return "target reached with the trials other processes still run"


class DiskFull(Exception):
    """A write failed because the disk is full: the run stops (finished trials are kept)."""


def disk_full_error(cfg: StudyConfig, detail: str) -> HpoError:
    """The one line the CLI prints when a write failed on a full disk (serial run or any --par worker)."""
    return HpoError(
        f"disk full while running study '{cfg.study}' ({detail}); finished trials are kept",
        f"free space on the disk of {cfg.output_dir} / the storage and rerun the same command to resume",
    )


def fail_on_disk_full(study: optuna.Study, objective: Objective, detail: str) -> None:
    """Fail this process's trial if the storage still takes it (it may be on the full disk)."""
    with contextlib.suppress(Exception):
        if objective.last_number >= 0:
            fail_trial(study, objective.last_number, f"disk full: {detail}")


def _disk_full_error(cfg: StudyConfig, study: optuna.Study, objective: Objective, detail: str) -> HpoError:
    """Fail this process's trial if the storage still takes it; the one line the CLI prints."""
    fail_on_disk_full(study, objective, detail)
    return disk_full_error(cfg, detail)


def run_serial(cfg: StudyConfig, started: float, progress: Progress | None = None) -> TuneReport:
    """Create or resume the study and run its trials in this process."""
    stop_on_signals()  # Ctrl-C (even when started in the background) and SIGTERM stop it the same way
    progress = progress or Progress(total=cfg.n_trials)
    wall_start = time.time()
    setup = prepare(cfg)
    study, tracker = start_study(cfg, setup)
    objective = build_objective(cfg, progress, setup=setup, tracker=tracker)
    objective.sampler_seed = seed_sampler(study, cfg)  # a resumed run does not replay the first proposals
    report = TuneReport(
        study=cfg.study,
        storage=redact(cfg.storage_url),
        target=cfg.n_trials,
        finished_before=finished_count(study),
        mlflow_uri=redact(cfg.mlflow_tracking_uri) if cfg.mlflow else None,
    )
    try:
        report.stopped_reason = run_trials(study, objective, cfg.n_trials, cfg.timeout)
    except KeyboardInterrupt as exc:
        report.interrupted, report.signum = True, signal_of(exc)
        report.stopped_reason = "interrupted: finished trials are kept; rerun the same command to resume"
    except DiskFull as exc:
        raise _disk_full_error(cfg, study, objective, str(exc)) from None
    except Exception as exc:  # a storage write (Optuna's own) failed on a full disk
        if (down := down_error()) is not None:  # the storage stayed unreachable past --storage-retry
            raise down from None
        if not is_disk_full(exc):
            raise
        raise _disk_full_error(cfg, study, objective, str(exc).splitlines()[0][:200]) from None
    finally:
        progress.close()
    report.poisoned = objective.poisoned
    report.new = finished_by(study, {os.getpid()}, wall_start)
    report.dropped_rows = setup.dropped_rows
    report.baseline = objective.agent.majority_baseline(objective.data.splits, "val")
    report.metric = objective.agent.metric_name
    report.baseline_name = objective.agent.baseline_name
    finish(report, study, objective.tracker, report_path(cfg))
    report.seconds = time.monotonic() - started
    return report
