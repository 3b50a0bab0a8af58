"""The report's first screen as data (hpo.results.report_summary): the best value by metric beside the
recorded baseline, the config fields a trial uses, counts by outcome, constants, several objectives."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import optuna
import pytest
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from hpo.results.report_data import build, report_file
from hpo.results.report_summary import (
    baseline,
    constant_params,
    fmt,
    history,
    summarize,
    used_config,
    varied_params,
)
from hpo.storage.study import AGENT_ATTR, BASELINE_ATTR
from hpo.trial import keys as K
from tests.unit.test_report_data import _trial

ENCODER = {"model": "bert", "learning_rate": 1.23456e-4, "loss": "ce", "label_smoothing": 0.0,
           "focal_gamma": 2.0, "frozen_layers": 1, "lora_r": 0, "lora_alpha": 16, "lora_dropout": 0.0,
           "lora_targets": "q_v", "quant": "none", "precision": "fp32"}  # fmt: skip
BASE = {"metric": "macro_f1", "name": "majority-class baseline", "value": 0.4}


def test_used_config_drops_fields_the_config_does_not_use() -> None:
    assert used_config(ENCODER) == {
        "model": "bert",
        "learning_rate": 1.23456e-4,
        "loss": "ce",
        "frozen_layers": 1,
        "precision": "fp32",
    }
    lora = used_config({**ENCODER, "lora_r": 8, "quant": "4bit", "loss": "focal"})
    assert {"lora_r", "lora_alpha", "lora_dropout", "lora_targets", "quant", "focal_gamma"} <= set(lora)
    assert "frozen_layers" not in lora and "label_smoothing" not in lora
    assert "lora_r" not in used_config({"model": "bert", "learning_rate": 1e-4})  # Optuna params, no LoRA


def test_fmt_rounds_floats_only() -> None:
    assert fmt(1.23456e-4) == "0.000123" and fmt(0.812345, 4) == "0.8123" and fmt(32) == "32"
    assert fmt(True) == "True" and fmt("q_v") == "q_v"


def _param_trial(state: TrialState, value: float | None, params: dict[str, object], attrs: dict) -> object:
    dists = {
        "learning_rate": FloatDistribution(1e-5, 1e-3, log=True),
        "model": CategoricalDistribution(["bert"]),
        "batch_size": CategoricalDistribution([16, 32]),
    }
    return create_trial(
        state=state, value=value, params=params, distributions={k: dists[k] for k in params}, user_attrs=attrs
    )


def test_varied_and_constant_params() -> None:
    trials = [
        _param_trial(
            TrialState.COMPLETE, 0.5, {"learning_rate": 1e-4, "model": "bert", "batch_size": 16}, {}
        ),
        _param_trial(
            TrialState.COMPLETE, 0.6, {"learning_rate": 2e-4, "model": "bert", "batch_size": 16}, {}
        ),
    ]
    assert varied_params(trials) == ["learning_rate"]  # type: ignore[arg-type]
    assert constant_params(trials) == ["batch_size", "model"]  # type: ignore[arg-type]


def _study(direction: Literal["minimize", "maximize"] = "maximize") -> optuna.Study:
    s = optuna.create_study(study_name="s", direction=direction)
    s.add_trials(
        [
            _trial(TrialState.COMPLETE, {K.TRIAL_CONFIG: ENCODER, K.GPU_GB: 24.0}, 0.35),
            _trial(TrialState.COMPLETE, {}, 0.3, start=5),
            _trial(TrialState.PRUNED, {K.PRUNED_REASON: K.REASON_EARLY_STOP}, start=10),
            _trial(TrialState.PRUNED, {K.PRUNED_REASON: K.REASON_MEMORY_ESTIMATE}, start=20),
            _trial(TrialState.PRUNED, {K.OOM: True, K.PRUNED_REASON: K.REASON_OOM}, start=30),
            _trial(TrialState.FAIL, {K.ERROR: "ValueError"}, start=40),
        ]
    )
    return s


def test_summary_names_the_metric_counts_and_warns_below_the_baseline() -> None:
    s = _study()
    s.set_user_attr(BASELINE_ATTR, BASE)
    got = summarize(s, build(s, time.time()))
    assert (got.baseline.metric, got.baseline.value) == ("macro_f1", 0.4)
    assert (got.best_value, got.best_trial, got.objectives) == (0.35, 0, 1)
    assert got.beats_baseline is False  # 0.35 < majority 0.4: the report warns
    assert got.best_config == used_config(ENCODER) and "lora_r" not in got.best_config
    assert got.counts == {"complete": 2, "pruned": 2, "pruned: oom": 1, "failed": 1}
    assert got.pruned_reasons == {"early_stop": 1, "memory_estimate": 1}
    assert got.wall_s == pytest.approx(50.0) and got.card_gb == 24.0


def test_minimizing_study_beats_a_higher_baseline() -> None:
    s = _study("minimize")
    s.set_user_attr(BASELINE_ATTR, BASE)
    got = summarize(s, build(s, time.time()))
    assert (got.best_value, got.best_trial, got.beats_baseline) == (0.3, 1, True)


def test_old_study_without_a_recorded_baseline() -> None:
    s = _study()
    assert baseline(s).value is None and baseline(s).metric == "objective value"
    s.set_user_attr(AGENT_ATTR, "criteria")  # the agent tells the metric; the value was never recorded
    got = summarize(s, build(s, time.time()))
    assert (got.baseline.metric, got.baseline.value, got.beats_baseline) == ("macro_f1", None, None)


def test_multi_objective_study_is_summarised_by_its_first_objective() -> None:
    s = optuna.create_study(study_name="m", directions=["maximize", "minimize"])
    dist: dict[str, BaseDistribution] = {"learning_rate": FloatDistribution(1e-5, 1e-3, log=True)}
    for value, p in (([0.5, 3.0], 1e-4), ([0.7, 9.0], 2e-4)):
        s.add_trial(create_trial(values=value, params={"learning_rate": p}, distributions=dist))
    got = summarize(s, build(s, time.time()))
    assert (got.objectives, got.best_value, got.best_trial, got.direction) == (2, 0.7, 1, "maximize")


def test_history_marks_pruned_and_oom_trials() -> None:
    s = _study()
    t = _trial(TrialState.PRUNED, {K.PRUNED_REASON: K.REASON_EARLY_STOP}, start=60)
    t.intermediate_values = {0: 0.2, 1: 0.25}
    s.add_trial(t)
    points = {p.number: p for p in history(s)}
    assert points[0].value == 0.35 and points[6].value == 0.25  # a pruned trial at its last reported value
    assert points[4].outcome == "pruned: oom" and points[4].value is None
    assert points[5].outcome == "failed" and "lora_r" not in points[0].config
    assert set(points[0].config) == {"model", "learning_rate", "loss", "frozen_layers", "precision"}  # differ


def test_report_file_is_where_tune_writes_it(tmp_path: Path) -> None:
    assert report_file(tmp_path, "s") == tmp_path / "s-report.html"
    assert report_file(None, "s") == Path("runs") / "s-report.html"


def test_tune_records_the_baseline_with_the_study() -> None:
    from types import SimpleNamespace

    from hpo.run.bootstrap import record_baseline

    agent = SimpleNamespace(
        metric_name="macro_f1",
        baseline_name="majority-class baseline",
        majority_baseline=lambda splits, split: 0.4,
    )
    s = optuna.create_study(study_name="s")
    record_baseline(s, SimpleNamespace(agent=agent, splits=None))  # type: ignore[arg-type]
    assert s.user_attrs[BASELINE_ATTR] == BASE
    assert baseline(s).value == 0.4 and baseline(s).name == "majority-class baseline"
