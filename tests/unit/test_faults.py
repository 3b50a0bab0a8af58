"""Fault injection: env parsing, exact firing points, trial filters, probability, simulated GPU."""

from __future__ import annotations

import pytest
import torch

from hpo.device.faults import FaultInjector, FaultPlan, SimulatedGpu
from hpo.device.oom import is_fatal_cuda_error, is_oom
from hpo.errors import ConfigError

GB = 1024**3


def _first_fire(inj: FaultInjector, epochs: int = 3, steps: int = 6) -> tuple[int, int, BaseException] | None:
    for e in range(epochs):
        for s in range(steps):
            try:
                inj.check(e, s)
            except RuntimeError as exc:
                return e, s, exc
    return None


def test_from_env_unset_and_empty() -> None:
    assert FaultPlan.from_env({}) is None
    assert FaultPlan.from_env({"HPO_INJECT_OOM": "  ", "HPO_INJECT_FATAL": ""}) is None


def test_from_env_parses_all_forms() -> None:
    assert FaultPlan.from_env({"HPO_INJECT_OOM": "epoch=1,step=3"}) == FaultPlan(oom_epoch=1, oom_step=3)
    assert FaultPlan.from_env({"HPO_INJECT_OOM": "p=0.3, seed=7"}) == FaultPlan(oom_probability=0.3, seed=7)
    plan = FaultPlan.from_env({"HPO_INJECT_OOM": "epoch=0,step=0,trials=1;4"})
    assert plan == FaultPlan(oom_epoch=0, oom_step=0, trials=frozenset({1, 4}))
    fatal = FaultPlan.from_env({"HPO_INJECT_FATAL": "epoch=0,step=2"})
    assert fatal == FaultPlan(fatal_epoch=0, fatal_step=2) and not fatal.has_oom and fatal.has_fatal
    both = FaultPlan.from_env(
        {"HPO_INJECT_OOM": "step=1", "HPO_INJECT_FATAL": "epoch=2,trials=1;4", "HPO_INJECT_OOM_X": "ignored"}
    )
    assert both == FaultPlan(oom_step=1, fatal_epoch=2, fatal_step=0, trials=frozenset({1, 4}))


@pytest.mark.parametrize(
    "env",
    [
        {"HPO_INJECT_OOM": "epoch"},
        {"HPO_INJECT_OOM": "epoch=one"},
        {"HPO_INJECT_OOM": "epoch=-1"},
        {"HPO_INJECT_OOM": "p=1.5"},
        {"HPO_INJECT_OOM": "p=0.5,,seed=1"},
        {"HPO_INJECT_OOM": "bogus=1"},
        {"HPO_INJECT_OOM": "trials=1;x"},
        {"HPO_INJECT_FATAL": "p=0.5"},
        {"HPO_INJECT_OOM": "trials=1", "HPO_INJECT_FATAL": "trials=2"},
    ],
)
def test_from_env_malformed_is_one_line_config_error(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        FaultPlan.from_env(env)
    assert "\n" not in str(info.value)


def test_from_dict() -> None:
    plan = FaultPlan.from_dict({"oom_epoch": 1, "oom_step": 2, "trials": [3, 5]})
    assert plan == FaultPlan(oom_epoch=1, oom_step=2, trials=frozenset({3, 5}))
    with pytest.raises(ConfigError):
        FaultPlan.from_dict({"oom_epochs": 1})
    with pytest.raises(ConfigError):
        FaultPlan.from_dict({"oom_probability": "often"})


def test_oom_fires_exactly_once_at_planned_point() -> None:
    inj = FaultInjector(FaultPlan(oom_epoch=1, oom_step=3), trial_number=0)
    fired = _first_fire(inj)
    assert fired is not None
    epoch, step, exc = fired
    assert (epoch, step) == (1, 3)
    assert isinstance(exc, torch.cuda.OutOfMemoryError) and is_oom(exc) and not is_fatal_cuda_error(exc)
    assert "CUDA out of memory" in str(exc) and "injected" in str(exc)
    assert _first_fire(inj) is None  # once per injector: the shrunk retry of this trial can succeed


def test_oom_fires_when_epoch_shorter_than_planned() -> None:
    inj = FaultInjector(FaultPlan(oom_epoch=0, oom_step=10), trial_number=0)
    fired = _first_fire(inj, steps=4)
    assert fired is not None and fired[:2] == (1, 0)


def test_only_listed_trials() -> None:
    plan = FaultPlan(oom_epoch=0, oom_step=0, trials=frozenset({1, 4}))
    fired = {n for n in range(6) if _first_fire(FaultInjector(plan, n)) is not None}
    assert fired == {1, 4}
    assert _first_fire(FaultInjector(None, 1)) is None


def test_probability_respected_and_deterministic() -> None:
    plan = FaultPlan(oom_probability=0.3, seed=7)
    hits = [n for n in range(200) if FaultInjector(plan, n).oom_at is not None]
    assert 40 <= len(hits) <= 80
    assert hits == [n for n in range(200) if FaultInjector(plan, n).oom_at is not None]
    for n in hits[:10]:
        fired = _first_fire(FaultInjector(plan, n))
        assert fired is not None and fired[0] == 0 and 0 <= fired[1] <= 3 and is_oom(fired[2])
    other = [n for n in range(200) if FaultInjector(FaultPlan(oom_probability=0.3, seed=8), n).oom_at]
    assert other != hits
    assert all(FaultInjector(FaultPlan(oom_probability=1.0), n).oom_at for n in range(20))


def test_fatal_is_sticky_and_fatal() -> None:
    inj = FaultInjector(FaultPlan(fatal_epoch=0, fatal_step=2), trial_number=3)
    fired = _first_fire(inj)
    assert fired is not None and fired[:2] == (0, 2)
    assert is_fatal_cuda_error(fired[2]) and not is_oom(fired[2])
    with pytest.raises(RuntimeError, match="illegal memory access"):
        inj.check(0, 0)  # a poisoned context stays poisoned


def test_no_plan_never_fires() -> None:
    assert _first_fire(FaultInjector(FaultPlan(), 0)) is None


def test_simulated_gpu() -> None:
    over = SimulatedGpu(capacity_bytes=24 * GB, estimated_peak_bytes=30 * GB)
    with pytest.raises(torch.cuda.OutOfMemoryError, match="simulated") as info:
        over.check(0, 0)
    assert is_oom(info.value) and "24.00 GiB" in str(info.value)
    under = SimulatedGpu(capacity_bytes=24 * GB, estimated_peak_bytes=23 * GB)
    for e in range(3):
        for s in range(10):
            under.check(e, s)
