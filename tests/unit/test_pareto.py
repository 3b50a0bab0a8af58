"""The Pareto front (hpo.results.pareto) on known values, against Optuna's best_trials, and --objectives."""

from __future__ import annotations

import json
import random
from pathlib import Path

import optuna
import pytest

from hpo.config.fingerprint import SETTINGS
from hpo.config.study import StudyConfig, load_config
from hpo.errors import ConfigError
from hpo.results.pareto import dominates, front


def test_front_known_values_max_min() -> None:
    # (macro_f1 max, peak_memory GB min)
    values = [(0.80, 2.0), (0.85, 3.0), (0.70, 2.5), (0.85, 3.5), (0.60, 1.0), (0.80, 2.0)]
    assert front(values, [True, False]) == [0, 1, 4, 5]  # 2 beaten by 0, 3 by 1; 0 and 5 tie: both kept


def test_front_directions_matter() -> None:
    values = [(1.0, 1.0), (2.0, 2.0), (3.0, 0.5)]
    assert front(values, [True, True]) == [1, 2]
    assert front(values, [False, False]) == [0, 2]
    assert front(values, [True, False]) == [2]
    assert front(values, [False, True]) == [0, 1]  # (1, 1) beats (3, 0.5) both ways


def test_front_three_objectives_and_nan() -> None:
    values = [(0.9, 4.0, 10.0), (0.9, 4.0, 12.0), (0.5, 1.0, 20.0), (float("nan"), 0.1, 0.1)]
    assert front(values, [True, False, False]) == [0, 2]
    assert front([], [True, False]) == []


def test_dominates_needs_one_strict_gain() -> None:
    assert not dominates((1.0, 2.0), (1.0, 2.0), [True, False])
    assert dominates((1.0, 1.9), (1.0, 2.0), [True, False])
    assert not dominates((1.1, 2.1), (1.0, 2.0), [True, False])


def test_front_agrees_with_optuna_best_trials() -> None:
    rng = random.Random(7)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    values = [(rng.choice([0.5, 0.6, 0.7]), rng.choice([1.0, 2.0, 3.0]), rng.random()) for _ in range(60)]
    values += [values[3], values[3]]  # exact ties
    for v in values:
        study.add_trial(optuna.trial.create_trial(values=list(v), params={}, distributions={}))
    ours = front(values, [True, False, False])
    assert ours == sorted(t.number for t in study.best_trials)
    assert 0 < len(ours) < len(values)


def test_objectives_validated_with_one_line_errors(tmp_path: object) -> None:
    cfg = load_config(None, {"objectives": ["macro_f1", "peak_memory", "latency"]})
    assert cfg.directions == ["maximize", "minimize", "minimize"]
    assert StudyConfig().directions == ["maximize"]
    for bad, why in [
        (["macro_f1", "bogus"], "unknown objective 'bogus'"),
        (["macro_f1", "peak_memory", "peak_memory"], "'peak_memory' is listed twice"),
        (["peak_memory", "macro_f1"], "the agent's metric first"),
    ]:
        with pytest.raises(ConfigError) as err:
            load_config(None, {"objectives": bad}, flags={"objectives": "--objectives"})
        assert "--objectives" in err.value.message and why in err.value.message
        assert "\n" not in err.value.message


def test_first_objective_must_be_the_agents_metric() -> None:
    from hpo.trial.objectives import names

    cfg = load_config(None, {"agent": "criteria", "objectives": ["accuracy", "peak_memory"]})
    with pytest.raises(ConfigError, match=r"--objectives.*'macro_f1'"):
        names(cfg, "macro_f1")
    ok = load_config(None, {"objectives": ["macro_f1", "train_time"]})
    assert names(ok, "macro_f1") == ["macro_f1", "train_time"]
    assert names(StudyConfig(), "macro_f1") == ["macro_f1"]


def test_objectives_are_fingerprinted() -> None:
    assert SETTINGS["objectives"].fingerprinted


def test_objective_values_measured_peak_else_estimate() -> None:
    from types import SimpleNamespace
    from typing import Any, cast

    from hpo.trial import keys as K
    from hpo.trial.objectives import as_attrs, values
    from hpo.units import GIB

    cfg = load_config(None, {"objectives": ["macro_f1", "peak_memory", "train_time", "latency"]})
    ctx = cast(Any, SimpleNamespace(budget=SimpleNamespace(device_total_bytes=3 * GIB), train_time_s=12.5))
    ctx.latency_ms = 0.75
    assert values(cfg, ctx, 0.8, {}) == {
        "macro_f1": 0.8,
        "peak_memory": 3.0,
        "train_time": 12.5,
        "latency": 0.75,
    }
    measured = values(cfg, ctx, 0.8, {K.MEASURED_DEVICE_GB: 2.25, K.MEASURED_PEAK_GB: 1.0})
    assert measured["peak_memory"] == 2.25  # the measured device-level peak wins over the estimate
    assert as_attrs({"macro_f1": 0.8})["objective_macro_f1"] == 0.8


def test_latency_is_per_example_at_a_fixed_batch() -> None:
    import torch

    from hpo.trial.objectives import LATENCY_BATCH, latency_ms

    seen: list[tuple[int, int]] = []

    class Model(torch.nn.Module):
        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            seen.append(tuple(input_ids.shape))
            return input_ids.float().sum(dim=1)

    mask = torch.zeros(40, 8, dtype=torch.long)
    mask[:, :5] = 1
    val = {
        "input_ids": torch.ones(40, 8, dtype=torch.long),
        "attention_mask": mask,
        "labels": torch.zeros(40),
    }
    ms = latency_ms(Model(), val, torch.device("cpu"), ("input_ids", "attention_mask", "token_type_ids"))
    assert ms > 0.0
    assert seen[0] == (LATENCY_BATCH, 5)  # warm-up, cut to the widest row
    assert [s[0] for s in seen[1:]] == [16, 16, 8]  # every validation row once, labels left out


def _stored_study(tmp_path: Path, directions: list[str], values: list[list[float]]) -> str:
    from hpo.storage.study import CONFIG_ATTR

    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    study = optuna.create_study(study_name="s", storage=url, directions=directions)
    names = ["macro_f1", "peak_memory", "latency"][: len(directions)]
    study.set_user_attr(CONFIG_ATTR, {"objectives": names if len(names) > 1 else None, "n_trials": 4})
    for v in values:
        cfg = {"model": "tiny", "learning_rate": 1e-4, "batch_size": 16}
        trial = optuna.trial.create_trial(
            values=v, params={}, distributions={}, user_attrs={"trial_config": cfg}
        )
        study.add_trial(trial)
    return url


def test_best_shows_the_front_and_checks_pick(tmp_path: Path) -> None:
    from hpo.results.best_front import show

    url = _stored_study(tmp_path, ["maximize", "minimize"], [[0.8, 2.0], [0.7, 3.0], [0.9, 4.0]])
    text = show("s", url, False, None, False, None)
    lines = text.splitlines()
    assert "Pareto front of study 's': 2 trial(s)" in lines[0]
    assert lines[1].split()[:5] == ["trial", "macro_f1", "(max)", "peak_memory", "(GB,"]
    assert [line.split()[0] for line in lines[2:4]] == ["0", "2"] and "0.0001" in lines[2]
    out = json.loads(show("s", url, False, None, True, None))
    assert [r["number"] for r in out["front"]] == [0, 2]
    assert out["front"][1]["values"] == {"macro_f1": 0.9, "peak_memory": 4.0}
    with pytest.raises(ConfigError, match="trial 1 is not on the Pareto front"):
        show("s", url, True, None, False, 1)
    with pytest.raises(ConfigError, match="needs --pick"):
        show("s", url, True, None, False, None)


def test_pick_is_refused_on_a_single_objective_study(tmp_path: Path) -> None:
    from hpo.results.best_front import show

    url = _stored_study(tmp_path, ["maximize"], [[0.8], [0.7]])
    with pytest.raises(ConfigError, match="--pick is for multi-objective studies"):
        show("s", url, True, None, False, 0)
    assert show("s", url, False, None, False, None).startswith("best trial 0: value 0.8000")
