"""The GPU study's rows and totals (hpo.bench.study_rows) on hand-made trials, its mix and its test hook."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from hpo.bench import study_rows as R
from hpo.bench.gpu_study import Plan
from hpo.bench.study_params import enqueue_params
from hpo.config.study import load_config
from hpo.errors import ConfigError
from hpo.run.isolation import FORCE_CAP_ENV, forced_cap
from hpo.trial import keys as K

T0 = datetime(2026, 1, 1, 12, 0, 0)
CFG: dict[str, Any] = {"model": "bert-base-uncased", "batch_size": 32, "max_length": 256, "precision": "fp32"}


def trial(
    number: int,
    start_s: float,
    end_s: float,
    state: TrialState = TrialState.COMPLETE,
    attrs: dict[str, Any] | None = None,
) -> FrozenTrial:
    base = {K.TRIAL_CONFIG: CFG, K.GPU_GB: 24.0, K.HEADROOM_GB: 1.5, K.ESTIMATED_PEAK_GB: 8.0}
    t = optuna.trial.create_trial(
        state=state,
        value=0.5 if state == TrialState.COMPLETE else None,
        params={"model": CFG["model"]},
        distributions={"model": CategoricalDistribution([CFG["model"]])},
        user_attrs=base | (attrs or {}),
    )
    t.number = number
    t.datetime_start, t.datetime_complete = T0 + timedelta(seconds=start_s), T0 + timedelta(seconds=end_s)
    return t


def oom(origin: str, head: str = "CUDA out of memory. Tried to allocate 2.00 GiB") -> dict[str, Any]:
    return {K.OOM: True, K.PRUNED_REASON: K.REASON_OOM, K.OOM_CONFIG: {"origin": origin, "error_head": head}}


def test_uncapped_oom_that_fits_alone_beside_another_trial_is_a_neighbour_death() -> None:
    died = trial(1, 10, 20, TrialState.PRUNED, oom("cuda"))
    other = trial(2, 5, 30)
    assert R.is_neighbour_death(died, [died, other])
    assert not R.is_neighbour_death(died, [died, trial(3, 25, 40)])  # alone on the card: its own OOM
    assert not R.is_neighbour_death(died, [died, other], forced=True)  # forced on purpose


def test_own_cap_too_big_injected_and_simulated_ooms_are_not_neighbour_deaths() -> None:
    other = trial(2, 0, 100)
    own_cap = trial(1, 10, 20, TrialState.PRUNED, oom("cuda", "... 3.00 GiB allowed; 2.9 GiB allocated"))
    too_big = trial(3, 10, 20, TrialState.PRUNED, {**oom("cuda"), **{K.ESTIMATED_PEAK_GB: 27.0}})
    injected = trial(4, 10, 20, TrialState.PRUNED, oom("injected"))
    simulated = trial(5, 10, 20, TrialState.PRUNED, oom("simulated"))
    for t in (own_cap, too_big, injected, simulated):
        assert not R.is_neighbour_death(t, [t, other]), t.number
    neighbour = trial(6, 10, 20, TrialState.PRUNED, oom("neighbour"))
    assert R.is_neighbour_death(neighbour, [neighbour])  # hpo's own classification of a capped worker


def test_worker_death_counts_only_beside_another_trial() -> None:
    died = trial(1, 10, 20, TrialState.FAIL, {K.WORKER_DEATH: {"signal": "SIGKILL"}})
    assert R.is_neighbour_death(died, [died, trial(2, 15, 25)])
    assert not R.is_neighbour_death(died, [died, trial(2, 30, 40)])


def test_ledger_interval_wins_over_trial_times() -> None:
    t = trial(1, 0, 100, TrialState.COMPLETE, {K.ADMITTED_AT: (T0 + timedelta(seconds=50)).timestamp()})
    start, end = R.interval(t)
    assert (
        start == (T0 + timedelta(seconds=50)).timestamp() and end == (T0 + timedelta(seconds=100)).timestamp()
    )


def test_rows_totals_error_and_worst_under_prediction() -> None:
    a = trial(0, 0, 10, TrialState.COMPLETE, {K.MEASURED_DEVICE_GB: 8.8, K.MEASURED_PEAK_GB: 7.0})  # +10 %
    b = trial(1, 0, 10, TrialState.COMPLETE, {K.MEASURED_DEVICE_GB: 7.2})  # -10 %
    c = trial(2, 5, 15, TrialState.PRUNED, oom("cuda"))
    d = trial(3, 0, 1, TrialState.PRUNED, {K.PRUNED_REASON: K.REASON_MEMORY_ESTIMATE})
    w = trial(4, 0, 0, TrialState.WAITING)
    rs = R.rows([a, b, c, d, w], "fixed-par-2", forced=[3])
    assert [r["number"] for r in rs] == [0, 1, 2, 3] and set(rs[0]) == set(R.COLUMNS)
    assert rs[0]["estimate_error"] == pytest.approx(0.1) and rs[3]["forced"]
    tot = R.schedule_totals(rs, 1800.0)
    assert tot["completed"] == 2 and tot["completed_per_hour"] == 4.0 and tot["ooms"] == 1
    assert tot["neighbour_deaths"] == 1 and tot["pruned"] == {"oom": 1, "memory_estimate": 1}
    err = R.error_by_family(rs)["bert-base-uncased"]
    assert err["n"] == 2 and err["min"] == pytest.approx(-0.1) and err["max"] == pytest.approx(0.1)
    worst = R.worst_under(rs)
    assert worst is not None and worst["number"] == 0 and worst["error"] == pytest.approx(0.1)
    assert R.worst_under(R.rows([b], "hpo")) is None  # over-predicted only
    assert R.family("/x/models/bert-large-uncased") == "bert-large-uncased"


@pytest.mark.parametrize("simulated", [True, False])
def test_every_mix_entry_is_in_its_study_space(simulated: bool) -> None:
    plan = Plan.load(simulated)
    cfg = load_config(plan.study_yaml)
    for entry in [*plan.mix, plan.forced_oom, plan.cpu_fallback]:
        fields = {k: v for k, v in entry.items() if k != "cap_fraction"}
        params = enqueue_params(cfg, fields, on_cuda=not simulated)
        assert params["model"] == entry["model"]
    assert {s.name for s in plan.schedules()} >= {"hpo", "hpo-shrink", "fixed-par-2", "cpu-fallback"}


def test_enqueue_params_names_narrowed_choices_and_refuses_values_outside() -> None:
    cfg = load_config(Plan.load(False).study_yaml)
    params = enqueue_params(cfg, {"model": "bert-large-uncased", "batch_size": 16, "max_length": 256}, True)
    assert params["batch_size:8/16"] == 16 and params["max_length:128/256/384"] == 256
    with pytest.raises(ValueError, match="batch_size=64"):
        enqueue_params(cfg, {"model": "bert-large-uncased", "batch_size": 64, "max_length": 256}, True)


def test_forced_cap_hook_fires_only_for_its_trials() -> None:
    env = {FORCE_CAP_ENV: "trials=3;7,fraction=0.25"}
    assert forced_cap(3, 8 * 2**30, 2**29, env) == (2 * 2**30, 0)
    assert forced_cap(4, 8 * 2**30, 2**29, env) == (8 * 2**30, 2**29)
    assert forced_cap(3, 8 * 2**30, 2**29, {}) == (8 * 2**30, 2**29)  # unset: never
    for bad in ("trials=3", "fraction=0.5", "trials=3,fraction=1.5", "trials=x,fraction=0.5"):
        with pytest.raises(ConfigError):
            forced_cap(3, 1, 1, {FORCE_CAP_ENV: bad})
