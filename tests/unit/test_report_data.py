"""The report's data (hpo.results.report_data): the right outcome per trial, measured peaks only where the
trial recorded them, nothing invented for what a study does not record."""

from __future__ import annotations

import datetime as dt
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from hpo.results.report_data import build, memory_point, outcome, reserved_over_time
from hpo.storage.study import CONFIG_ATTR
from hpo.trial import keys as K

T0 = dt.datetime(2026, 1, 1, 12, 0, 0)
DIST = {"learning_rate": FloatDistribution(1e-5, 1e-3, log=True)}


def _trial(state: TrialState, attrs: dict[str, Any], value: float | None = None, start: float = 0.0) -> Any:
    t = create_trial(
        state=state,
        value=value,
        params={"learning_rate": 1e-4},
        distributions=DIST,
        user_attrs={K.TRIAL_CONFIG: {"model": "m", "batch_size": 8}, **attrs},
    )
    t.datetime_start = T0 + dt.timedelta(seconds=start)
    t.datetime_complete = T0 + dt.timedelta(seconds=start + 10) if state.is_finished() else None
    return t


MEASURED = {K.MEASURED_PEAK_GB: 3.0, K.MEASURED_RESERVED_GB: 3.5, K.MEASURED_DEVICE_GB: 4.4}


@pytest.fixture
def study() -> optuna.Study:
    s = optuna.create_study(study_name="s", direction="maximize")
    s.add_trials(
        [
            _trial(TrialState.COMPLETE, {K.ESTIMATED_PEAK_GB: 4.0, **MEASURED}, 0.8),
            _trial(TrialState.PRUNED, {K.ESTIMATED_PEAK_GB: 3.0, K.PRUNED_REASON: K.REASON_EARLY_STOP}),
            _trial(TrialState.PRUNED, {K.ESTIMATED_PEAK_GB: 30.0, K.PRUNED_REASON: K.REASON_MEMORY_ESTIMATE}),
            _trial(
                TrialState.PRUNED,
                {K.ESTIMATED_PEAK_GB: 9.0, K.OOM: True, K.OOM_CONFIG: {}, K.PRUNED_REASON: K.REASON_OOM},
            ),
            _trial(TrialState.FAIL, {K.ESTIMATED_PEAK_GB: 2.0, K.ERROR: "ValueError"}),
            _trial(TrialState.PRUNED, {}),  # an old trial without a recorded reason
        ]
    )
    return s


def test_outcome_per_trial(study: optuna.Study) -> None:
    got = [outcome(t) for t in study.trials]
    assert got == [
        "complete",
        "pruned: early_stop",
        "pruned: memory_estimate",
        "pruned: oom",
        "failed",
        "pruned: early_stop",
    ]
    data = build(study, now=T0.timestamp() + 100)
    assert data.outcomes == {
        "complete": 1,
        "pruned: early_stop": 2,
        "pruned: memory_estimate": 1,
        "pruned: oom": 1,
        "failed": 1,
    }


def test_measured_only_where_recorded(study: optuna.Study) -> None:
    points = build(study, now=T0.timestamp() + 100).points
    first, *rest = points
    assert (first.allocated_gb, first.reserved_gb, first.device_gb) == (3.0, 3.5, 4.4)
    assert first.nvml_gb is None  # not recorded on that trial
    assert first.error == pytest.approx(4.4 / 4.0 - 1)
    for p in rest:  # pruned before or during training, failed: nothing measured, nothing filled in
        assert (p.allocated_gb, p.reserved_gb, p.device_gb, p.nvml_gb, p.error) == (None,) * 5
    assert rest[-1].estimated_gb is None  # no estimate recorded: none invented
    assert build(study, now=0).errors == [pytest.approx(0.1)]


def test_lighter_form_uses_its_own_estimate_and_config() -> None:
    attrs = {
        K.ESTIMATED_PEAK_GB: 10.0,
        K.RUN_ESTIMATED_PEAK_GB: 6.0,
        K.RUN_CONFIG: {"model": "m", "batch_size": 4, "grad_accum": 2},
        K.ELASTIC_FORM: "batch 8 -> 4 x accum 2",
        K.MEASURED_DEVICE_GB: 5.7,
    }
    p = memory_point(_trial(TrialState.COMPLETE, attrs, 0.5))
    assert p.estimated_gb == 6.0 and p.config["batch_size"] == 4 and p.ran_as.startswith("batch")
    assert p.error == pytest.approx(5.7 / 6.0 - 1)


def test_timeline_and_reservations_from_admissions() -> None:
    s = optuna.create_study(direction="maximize")
    t0 = T0.timestamp()
    gpu = {K.DEVICE: "cuda", K.ESTIMATED_HOST_GB: 1.0}
    a = {K.WORKER: "w0.0", K.ESTIMATED_PEAK_GB: 4.0, K.ADMISSION_WAIT_S: 0.0, K.ADMITTED_AT: t0 + 1, **gpu}
    b = {K.WORKER: "w1.1", K.ESTIMATED_PEAK_GB: 6.0, K.ADMISSION_WAIT_S: 3.0, K.ADMITTED_AT: t0 + 5, **gpu}
    cpu = {K.WORKER: "w0.0", K.DEVICE: "cpu", K.ESTIMATED_PEAK_GB: 5.0, K.ESTIMATED_HOST_GB: 2.0}
    s.add_trials(
        [
            _trial(TrialState.COMPLETE, {**a, K.RELEASED_AT: t0 + 9}, 0.5, start=0),
            _trial(TrialState.PRUNED, {**b, K.PRUNED_REASON: K.REASON_EARLY_STOP}, start=2),  # no release
            _trial(TrialState.RUNNING, {**cpu, K.ADMITTED_AT: t0 + 13}, start=11),
        ]
    )
    data = build(s, now=t0 + 20)
    assert [sp.worker for sp in data.spans] == ["w0.0", "w1.1", "w0.0"]
    assert data.spans[1].wait_s == 3.0 and data.spans[2].end_s is None
    # the pruned trial's reservation ends when it finished (12 s), as the trial recorded no release
    assert data.reserved == [(1.0, 4.0), (5.0, 10.0), (9.0, 6.0), (12.0, 0.0)]
    # the CPU trial held host RAM only: the GPU ledger reserved nothing for it
    assert data.host_reserved == [(1.0, 1.0), (5.0, 2.0), (9.0, 1.0), (12.0, 0.0), (13.0, 2.0)]
    assert data.recycled == ["w1.1"]
    assert data.now_s == pytest.approx(20.0)


def test_says_what_is_not_recorded(study: optuna.Study) -> None:
    data = build(study, now=0)
    assert data.card_gb is None and data.reserved == []
    text = " ".join(data.not_recorded)
    assert "card size" in text and "memory reservations" in text and "which GPU" in text


def test_card_and_headroom_from_the_study_config(study: optuna.Study) -> None:
    study.set_user_attr(CONFIG_ATTR, {"gpu_memory": "24GB", "headroom_gb": 2.0})
    data = build(study, now=0)
    assert data.card_gb == pytest.approx(24.0) and data.headroom_gb == 2.0
    assert not any("card size" in m for m in data.not_recorded)


def test_reserved_over_time_empty_without_admissions() -> None:
    assert reserved_over_time([]) == []


def test_card_recorded_on_the_trials_wins(study: optuna.Study) -> None:
    study.set_user_attr(CONFIG_ATTR, {"gpu_memory": "24GB"})
    study.add_trial(_trial(TrialState.COMPLETE, {K.GPU_GB: 79.2, K.HEADROOM_GB: 2.5}, 0.1))
    data = build(study, now=0)
    assert (data.card_gb, data.headroom_gb) == (79.2, 2.5)
