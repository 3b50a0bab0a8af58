"""Worker deaths as evidence: the kill fault, markers, death records, the crash-loop breaker, the guard."""

from __future__ import annotations

import signal
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo.device.faults import FaultInjector, FaultPlan
from hpo.errors import ConfigError
from hpo.run.deaths import CrashLoop, evidence, likely_cause, ran_count
from hpo.run.protocol import read_marker, write_marker
from hpo.trial import keys as K
from hpo.trial import outcomes
from hpo.trial.deaths import MAX_DEATHS, deaths_of, near_key
from tests.support import BASE

GB = 2**30


def test_kill_fault_parses_and_is_planned_for_its_trials() -> None:
    plan = FaultPlan.from_env({"HPO_INJECT_KILL": "epoch=1,step=2,trials=0;3"})
    assert plan == FaultPlan(kill_epoch=1, kill_step=2, trials=frozenset({0, 3}))
    assert plan is not None and plan.has_kill and not plan.has_oom and not plan.has_fatal
    assert FaultInjector(plan, 3).kill_at == (1, 2)
    assert FaultInjector(plan, 1).kill_at is None
    every = FaultPlan.from_env({"HPO_INJECT_KILL": "step=0"})
    assert FaultInjector(every, 7).kill_at == (0, 0)
    FaultInjector(plan, 3).check(0, 5)  # before its point: nothing happens
    with pytest.raises(ConfigError, match="name different trials"):
        FaultPlan.from_env({"HPO_INJECT_OOM": "trials=1", "HPO_INJECT_KILL": "trials=2"})
    with pytest.raises(ConfigError, match="HPO_INJECT_KILL"):
        FaultPlan.from_env({"HPO_INJECT_KILL": "p=0.5"})


def test_marker_round_trip(tmp_path: Path) -> None:
    marker = tmp_path / "123.trial"
    assert read_marker(marker) is None
    write_marker(marker, 4, "training epoch 1/2 step 3/9")
    assert read_marker(marker) == (4, "training epoch 1/2 step 3/9")
    marker.write_text("7")  # a marker without a phase
    assert read_marker(marker) == (7, "unknown")
    marker.write_text("garbage")
    assert read_marker(marker) is None


def test_likely_cause_and_evidence() -> None:
    assert "nearly out of RAM" in likely_cause(-signal.SIGKILL, 1 * GB, 24 * GB)
    assert "OOM killer" in likely_cause(-signal.SIGKILL, 12 * GB, 24 * GB)
    assert likely_cause(-signal.SIGSEGV, 12 * GB, 24 * GB) == "killed by SIGSEGV"
    assert likely_cause(1, 12 * GB, 24 * GB) == "exited with code 1"
    death = evidence(-signal.SIGKILL, "training epoch 1/1 step 1/4", "w0.1")
    assert death["signal"] == "SIGKILL" and death["exit_code"] == -9 and death["worker"] == "w0.1"
    assert death["phase"] == "training epoch 1/1 step 1/4"
    assert 0 < death["host_ram_available_gb"] <= death["host_ram_total_gb"]
    assert death["host_ram_used_gb"] > 0
    assert evidence(1, "sampling", "w1.0")["signal"] is None


def test_crash_loop_trips_after_k_deaths_in_a_row_only() -> None:
    loop = CrashLoop(limit=3)
    loop.trial_finished(2)
    assert not loop.died(2, {})
    assert not loop.died(2, {})
    loop.trial_finished(3)  # a trial finished: the count starts over
    assert not loop.died(3, {})
    assert not loop.died(3, {})
    cfg = BASE.model_dump()
    assert loop.died(3, {"trial": 9, "config": cfg, "phase": "training", "likely_cause": "killed by SIGKILL"})
    msg = loop.message()
    assert "3 worker deaths in a row" in msg and "trial 9" in msg and "model=hpo-tiny-bert" in msg
    assert "killed by SIGKILL" in msg and "\n" not in msg and "rerun to resume" in msg


def _died(study: optuna.Study, config: dict[str, object]) -> None:
    trial = study.ask()
    trial.set_user_attr(K.TRIAL_CONFIG, config)
    assert outcomes.worker_died(study, trial.number, evidence(-9, "training", "w0.0")) is not None


def test_deaths_count_near_identical_configs_and_mark_the_trial() -> None:
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), direction="maximize")
    cfg = BASE.model_dump()
    _died(study, cfg)
    failed = study.trials[0]
    assert failed.state == TrialState.FAIL and failed.user_attrs["error"].startswith("worker process died (")
    assert failed.user_attrs[K.WORKER_DEATH]["signal"] == "SIGKILL"
    assert outcomes.worker_died(study, 0, {}) is None  # already ended
    near = BASE.model_copy(update={"learning_rate": 1.0004e-3})
    assert near_key(near.model_dump()) == near_key(cfg)
    assert deaths_of(study, near) == 1
    _died(study, near.model_dump())
    assert deaths_of(study, BASE) == MAX_DEATHS
    other = BASE.model_copy(update={"batch_size": 32})
    assert deaths_of(study, other) == 0
    # a plain FAIL (no death record) is not a death
    trial = study.ask()
    trial.set_user_attr(K.TRIAL_CONFIG, cfg)
    study.tell(trial, state=TrialState.FAIL)
    assert deaths_of(study, BASE) == MAX_DEATHS


def test_ran_count_leaves_out_configs_pruned_for_deaths() -> None:
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.5))
    pruned = optuna.trial.create_trial(state=TrialState.PRUNED, user_attrs={K.PRUNED_REASON: "worker_deaths"})
    study.add_trial(pruned)
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED, user_attrs={K.PRUNED_REASON: "oom"}))
    assert ran_count(study) == 2
