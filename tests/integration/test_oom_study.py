"""The OOM path end to end on CPU: injected and simulated OOMs cost one trial, never the study or memory."""

from __future__ import annotations

import gc
import io
from pathlib import Path
from typing import Any

import optuna
import psutil
import pytest
import torch
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from hpo.config.study import StudyConfig, load_config
from hpo.device.oom import OOM_FIELDS
from hpo.progress import Progress
from hpo.run.setup import build_objective
from hpo.storage.study import create_or_load
from tests.support import REPO

MB = 1024**2
TINY_CARD = {"gpu_memory": "0.001GB", "headroom_gb": 0.0, "space": {"batch_size": [2, 4]}}  # a 1 MB "GPU"


def make_cfg(tmp_path: Path, **overrides: Any) -> StudyConfig:
    base = {
        "output_dir": tmp_path / "runs",
        "epochs": 1,
        "patience": 1,
        "max_train_examples": 32,
        "eval_batch_size": 128,
        "mlflow": False,
    }
    base.update(overrides)
    return load_config(REPO / "configs" / "studies" / "ci-tiny.yaml", base)


def live_tensors() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


def run(cfg: StudyConfig, n: int, measure: bool = False) -> tuple[optuna.Study, list[int], list[int]]:
    objective = build_objective(cfg, Progress(stream=io.StringIO(), live=False))
    study = create_or_load(cfg)
    rss, tensors = [], []
    for _ in range(n):
        study.optimize(objective, n_trials=1, catch=(Exception,))
        if measure:
            tensors.append(live_tensors())
            rss.append(psutil.Process().memory_info().rss)
    return study, rss, tensors


def test_thirty_trials_with_injected_ooms_are_pruned_and_leak_nothing(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, n_trials=32, mlflow=True, faults={"oom_probability": 0.3, "seed": 11})
    study, rss, tensors = run(cfg, 32, measure=True)
    trials = study.get_trials()
    assert len(trials) == 32
    assert not [t for t in trials if t.state == TrialState.FAIL]
    ooms = [t for t in trials if t.user_attrs.get("oom")]
    assert 4 <= len(ooms) <= 18, len(ooms)
    for t in ooms:
        assert t.state == TrialState.PRUNED and t.user_attrs["pruned_reason"] == "oom"
        record = t.user_attrs["oom_config"]
        assert set(OOM_FIELDS) <= set(record)
        assert record["effective_batch"] == record["batch_size"] * record["grad_accum"]
        assert record["epoch"] == 0 and record["step"] is not None and "out of memory" in record["error_head"]
        assert not t.intermediate_values, "an OOM trial must be pruned before it reports anything"
        assert t.constraints == {"memory": 1.0}
    # memory does not grow trial over trial (warm-up excluded)
    assert tensors[-1] <= tensors[5] + 10, tensors
    assert rss[-1] - rss[5] < 150 * MB, [r // MB for r in rss]

    client = MlflowClient(tracking_uri=cfg.mlflow_tracking_uri)
    exp = client.get_experiment_by_name(cfg.study)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], filter_string="params.oom_error = 'True'")
    assert len(runs) == len(ooms)
    for r in runs:
        assert r.info.status == "FAILED" and r.data.tags["oom"] == "true"
        assert r.data.params["oom_model"] == "hpo-tiny-bert"
        assert "oom_config.json" in [a.path for a in client.list_artifacts(r.info.run_id)]


def test_shrink_policy_keeps_effective_batch(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, n_trials=2, on_oom="shrink", faults={"oom_epoch": 0, "oom_step": 0})
    study, _, _ = run(cfg, 2)
    for t in study.get_trials():
        assert t.state == TrialState.COMPLETE, t.user_attrs
        first, final = t.user_attrs["trial_config"], t.user_attrs["final_config"]
        assert final["batch_size"] * final["grad_accum"] == first["batch_size"] * first["grad_accum"]
        assert final["batch_size"] == first["batch_size"] // 2
        assert len(t.user_attrs["oom_attempts"]) == 1


def test_cpu_policy_finishes_the_trial_on_cpu(tmp_path: Path) -> None:
    # simulated 1 MB card: every config OOMs on the "GPU", then finishes on the CPU
    cfg = make_cfg(
        tmp_path, n_trials=1, on_oom="cpu", gpu_memory="0.001GB", prune_by_estimate=False, headroom_gb=0.0
    )
    study, _, _ = run(cfg, 1)
    t = study.get_trials()[0]
    assert t.state == TrialState.COMPLETE, t.user_attrs
    assert t.user_attrs["final_device"].startswith("cpu")
    assert "simulated" in t.user_attrs["oom_attempts"][0]["error_head"]


def test_simulated_gpu_prunes_by_estimate_before_training(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, n_trials=2, **TINY_CARD)
    study, _, _ = run(cfg, 2)
    for t in study.get_trials():
        assert t.state == TrialState.PRUNED and t.user_attrs["pruned_reason"] == "memory_estimate"
        assert t.user_attrs["estimated_peak_gb"] > 0.001
        assert "epochs_run" not in t.user_attrs


def test_simulated_gpu_ooms_at_first_step_when_estimate_pruning_is_off(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, n_trials=1, prune_by_estimate=False, **TINY_CARD)
    study, _, _ = run(cfg, 1)
    t = study.get_trials()[0]
    assert t.state == TrialState.PRUNED and t.user_attrs["pruned_reason"] == "oom"
    assert (t.user_attrs["oom_config"]["epoch"], t.user_attrs["oom_config"]["step"]) == (0, 0)


def test_fatal_cuda_error_fails_trial_and_poisons_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPO_INJECT_FATAL", "epoch=0,step=1")
    cfg = make_cfg(tmp_path, n_trials=3)
    objective = build_objective(cfg, Progress(stream=io.StringIO(), live=False))
    study = create_or_load(cfg)
    study.optimize(objective, n_trials=1, catch=(Exception,))
    t = study.get_trials()[0]
    assert t.state == TrialState.FAIL and "illegal memory access" in t.user_attrs["fatal_error"]
    assert objective.poisoned


def test_measured_peaks_are_recorded_and_high_memory_tagged(tmp_path: Path) -> None:
    import torch

    from hpo.config.catalog import get_spec
    from hpo.device.faults import FaultInjector
    from hpo.device.oom import PeakMemory
    from hpo.train.loop import TrainResult
    from hpo.trial import outcomes
    from hpo.trial.context import TrialContext
    from hpo.trial.space import sample

    cfg = make_cfg(tmp_path, n_trials=1, gpu_memory="24GB", high_memory_fraction=0.5)
    objective = build_objective(cfg, Progress(stream=io.StringIO(), live=False))
    study = create_or_load(cfg)
    trial = study.ask()
    tcfg = sample(trial, objective.space)
    spec = get_spec(tcfg.model)
    budget = objective.sizer.estimate(spec, tcfg)
    # a measured peak as a CUDA run reports it: 14 GiB allocated, 15 GiB reserved, NVML 16 GiB
    peak = PeakMemory(
        allocated_bytes=14 * 1024**3, reserved_bytes=15 * 1024**3, nvml_process_bytes=16 * 1024**3
    )
    measured = objective.sizer.measured(spec, tcfg, budget, peak)
    ctx = TrialContext(trial, tcfg, spec, tcfg, budget, torch.device("cpu"), True, FaultInjector(None, 0))
    outcomes.completed(ctx, objective.tracker, TrainResult(0.5, 0), "macro_f1", measured, 1)
    attrs = study.trials[0].user_attrs
    assert attrs["measured_peak_gb"] == 14.0 and attrs["measured_reserved_gb"] == 15.0
    assert attrs["measured_device_gb"] == 16.0 and attrs["high_memory"] is True


def test_an_injected_oom_is_recorded_but_never_calibrates(tmp_path: Path) -> None:
    """Calibration hygiene end to end: the injected OOM prunes its own trial (recorded, origin "injected"),
    but the same config runs again with the same estimate: only real CUDA OOMs on a real card are evidence
    (the near-identical pruning of real ones: tests/unit/test_memory_calibrate.py)."""
    cfg = make_cfg(
        tmp_path, n_trials=3, gpu_memory="24GB", faults={"oom_epoch": 0, "oom_step": 0, "trials": [0]}
    )
    objective = build_objective(cfg, Progress(stream=io.StringIO(), live=False))
    study = create_or_load(cfg)
    study.enqueue_trial({"batch_size": 32, "max_length": 64})
    study.optimize(objective, n_trials=1, catch=(Exception,))
    first = study.trials[0]
    assert first.user_attrs["pruned_reason"] == "oom"
    study.enqueue_trial(dict(first.params))  # the same config again
    study.enqueue_trial({**first.params, "batch_size": 16})  # smaller batch x length: not near-identical
    study.optimize(objective, n_trials=2, catch=(Exception,))
    again, smaller = study.trials[1], study.trials[2]
    assert first.user_attrs["oom_config"]["origin"] == "injected"
    assert again.state == TrialState.COMPLETE and smaller.state == TrialState.COMPLETE
    assert again.user_attrs["estimated_peak_gb"] == first.user_attrs["estimated_peak_gb"]
    assert not (tmp_path / "runs" / "calibration.json").exists()  # nothing was evidence
