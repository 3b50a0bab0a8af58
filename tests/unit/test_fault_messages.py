"""Small fault messages: the reason `hpo trials` shows for a FAIL trial, the hint when no trial completed."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from hpo.errors import StorageError
from hpo.results.best import best_trial
from hpo.results.trials import trial_row
from hpo.run.report import TuneReport
from hpo.storage.study import CONFIG_ATTR
from hpo.trial import keys as K


def _trial(state: TrialState, attrs: dict[str, object]) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(
        state=state,
        user_attrs=attrs,
        value=0.5 if state.is_finished() and state == TrialState.COMPLETE else None,
    )


def test_a_failed_trial_shows_the_first_line_of_its_error() -> None:
    error = "RuntimeError: CUDA error: device-side assert triggered\nstack line 1\nstack line 2"
    row = trial_row(_trial(TrialState.FAIL, {K.ERROR: error}))
    assert row["reason"] == "RuntimeError: CUDA error: device-side assert triggered"


def test_a_long_error_is_cut_with_an_ellipsis() -> None:
    row = trial_row(_trial(TrialState.FAIL, {K.ERROR: "ValueError: " + "x" * 500}))
    assert len(row["reason"]) <= 80 and row["reason"].endswith("...")
    assert row["reason"].startswith("ValueError: xxx")


@pytest.mark.parametrize("attrs", [{}, {K.ERROR: ""}])
def test_a_failed_trial_without_an_error_shows_nothing(attrs: dict[str, object]) -> None:
    assert trial_row(_trial(TrialState.FAIL, attrs))["reason"] == ""


def test_a_pruned_trial_still_shows_its_pruned_reason() -> None:
    row = trial_row(_trial(TrialState.PRUNED, {K.PRUNED_REASON: K.REASON_OOM, K.ERROR: "ignored"}))
    assert row["reason"] == K.REASON_OOM


def _all_pruned_study(target: int, reasons: list[str]) -> optuna.Study:
    study = optuna.create_study(study_name="my study", direction="maximize")
    study.set_user_attr(CONFIG_ATTR, {"n_trials": target})
    for reason in reasons:
        study.add_trial(_trial(TrialState.PRUNED, {K.PRUNED_REASON: reason}))
    return study


def test_best_of_a_study_whose_target_was_reached_by_pruned_trials_says_what_to_do() -> None:
    study = _all_pruned_study(3, [K.REASON_OOM, K.REASON_OOM, K.REASON_MEMORY_ESTIMATE])
    with pytest.raises(StorageError) as info:
        best_trial(study)
    err = info.value
    assert "until at least one trial completes" not in str(err)
    assert "all 3 finished trials were pruned (oom 2, memory_estimate 1)" in err.message
    assert "--n-trials" in str(err.fix) and "hpo trials --study 'my study' --reason oom" in str(err.fix)
    assert "GPU memory" in str(err.fix)


def test_best_of_a_study_pruned_by_early_stopping_points_at_patience() -> None:
    with pytest.raises(StorageError) as info:
        best_trial(_all_pruned_study(2, [K.REASON_EARLY_STOP, K.REASON_EARLY_STOP]))
    assert "--n-trials" in str(info.value.fix) and "--patience" in str(info.value.fix)


def test_best_of_a_study_below_its_target_says_resume() -> None:
    with pytest.raises(StorageError) as info:
        best_trial(_all_pruned_study(5, [K.REASON_OOM]))
    assert "1 of 5 trials finished" in str(info.value) and "hpo tune" in str(info.value.fix)


def test_the_tune_summary_explains_a_run_whose_trials_were_all_pruned() -> None:
    report = TuneReport(study="s", storage="sqlite:///x.db", target=2, finished_before=0)
    report.counts = {"complete": 0, "pruned_oom": 2, "fail": 0}
    text = "\n".join(report.lines())
    assert "no trial completed: all 2 finished trials were pruned (oom 2)" in text
    assert "--n-trials" in text and "--reason oom" in text
