"""Elastic admission: lighter forms are lighter, train the same model, and are taken only when they must."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from test_hyperparams_effect import BASE, run

from hpo.config import load_config
from hpo.memory.budget import CUDA_CONTEXT
from hpo.memory.catalog import get_spec
from hpo.memory.estimate import estimate
from hpo.progress import Progress
from hpo.results.trials import trial_row
from hpo.run.ledger import Ledger, LedgerTimeout
from hpo.run.setup import build_objective
from hpo.run.worker import LedgerAdmission
from hpo.study import create_or_load
from hpo.trial.elastic import describe, lighter_forms
from hpo.trial.sizing import memory_request

REPO = Path(__file__).resolve().parent.parent
MIB = 2**20


def shape(cfg: object) -> tuple[int, int, bool]:
    return cfg.batch_size, cfg.grad_accum, cfg.grad_checkpointing  # type: ignore[attr-defined]


def test_forms_keep_the_effective_batch_cheapest_first() -> None:
    forms = lighter_forms(BASE)  # 16 x 1, no checkpointing
    assert [shape(f) for f in forms] == [
        (16, 1, True),
        (8, 2, False),
        (8, 2, True),
        (4, 4, False),
        (4, 4, True),
    ]
    assert all(f.effective_batch == BASE.effective_batch for f in forms)
    assert all(
        f.model_dump(exclude={"batch_size", "grad_accum", "grad_checkpointing"})
        == BASE.model_dump(exclude={"batch_size", "grad_accum", "grad_checkpointing"})
        for f in forms
    )
    odd = BASE.model_copy(update={"batch_size": 6, "grad_checkpointing": True})
    assert [shape(f) for f in lighter_forms(odd)] == [(3, 2, True)]  # 3 cannot be halved again
    assert lighter_forms(BASE.model_copy(update={"batch_size": 1, "grad_checkpointing": True})) == []
    assert describe(BASE, forms[2]) == "micro-batch 8x2 accumulation + gradient checkpointing"
    assert describe(BASE, forms[0]) == "gradient checkpointing" and describe(BASE, BASE) == ""


@pytest.mark.parametrize("model", ["bert-base-uncased", "roberta-large", "deberta-v3-base"])
def test_every_form_needs_less_memory_than_the_sampled_one(model: str) -> None:
    sampled = BASE.model_copy(update={"model": model, "batch_size": 32, "max_length": 256})
    need = estimate(get_spec(model), memory_request(sampled, 2)).device_total_bytes
    for form in lighter_forms(sampled):
        assert estimate(get_spec(model), memory_request(form, 2)).device_total_bytes < need, shape(form)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_checkpointing_form_trains_the_same_model(dropout: float) -> None:
    cfg = BASE.model_copy(update={"dropout": dropout})
    weights, result, _ = run(cfg)
    ckpt_weights, ckpt_result, _ = run(lighter_forms(cfg)[0])  # dropout masks are replayed, not redrawn
    assert all(torch.allclose(weights[k], ckpt_weights[k], atol=1e-6) for k in weights)
    assert ckpt_result.best_metric == result.best_metric


@pytest.mark.parametrize("form", [1, 3])
def test_smaller_micro_batch_form_trains_the_same_model(form: int) -> None:
    cfg = BASE.model_copy(update={"dropout": 0.0})  # dropout draws per micro-batch: compare without it
    weights, result, _ = run(cfg)
    light_weights, light_result, _ = run(lighter_forms(cfg)[form])
    assert light_result.optimizer_steps == result.optimizer_steps
    assert all(torch.allclose(weights[k], light_weights[k], atol=1e-5) for k in weights)


def test_ledger_takes_a_lighter_form_only_after_waiting(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.json", "GPU-e", 100, poll_interval=0.01)
    neighbour = ledger.reserve(50)
    with pytest.raises(LedgerTimeout):  # 60 does not fit and the lighter 40 is not eligible yet
        ledger.reserve(60, lighter=[45, 40], lighter_after=30, timeout=0.2)
    start = time.monotonic()
    res = ledger.reserve(60, lighter=[55, 45, 40], lighter_after=0.2, timeout=5)
    assert 0.15 <= time.monotonic() - start < 3
    assert (res.form, res.bytes) == (2, 45)  # the first form that fits, in the caller's order
    ledger.release(res)
    ledger.release(neighbour)
    assert ledger.reserve(60, lighter=[40], lighter_after=0).form == 0  # the sampled form when it fits


def test_waiter_advertises_the_least_it_can_run_with(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.json", "GPU-e", 100, poll_interval=0.01)
    neighbour = ledger.reserve(70)
    got: list[int] = []

    def wait() -> None:
        got.append(ledger.reserve(80, lighter=[40], lighter_after=0.5, timeout=5).form)

    def advertised() -> list[int]:
        return [w["bytes"] for w in json.loads(ledger.path.read_text())["GPU-e"]["waiting"]]

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.25)
    assert advertised() == [80]  # the sampled form only, for now
    time.sleep(0.6)
    assert advertised() == [40]  # the lighter form is eligible: anti-starvation keeps only that free
    ledger.release(neighbour)
    waiter.join(5)
    assert got == [0] and advertised() == []  # once the card is free the sampled form fits


def test_form_that_never_fits_beside_the_contexts_is_skipped_at_once(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.json", "GPU-e", 100, poll_interval=0.01)
    ledger.hold_process(30)
    assert ledger.reserve(80, lighter=[60], lighter_after=3600, timeout=2).form == 1


def test_objective_runs_a_waiting_trial_in_its_lighter_form(tmp_path: Path) -> None:
    """Real ledger, real training: a neighbour leaves room for the checkpointed form only."""
    cfg = load_config(
        REPO / "configs" / "studies" / "ci-tiny.yaml",
        {
            "output_dir": tmp_path / "runs",
            "n_trials": 1,
            "epochs": 1,
            "max_train_examples": 32,
            "gpu_memory": "2GiB",
            "headroom_gb": 0.0,
            "elastic_after_s": 0.0,
            "space": {
                "batch_size": [32],
                "grad_accum": [1],
                "max_length": [64],
                "grad_checkpointing": [False],
                "frozen_layers_max": 0,
            },
        },
    )
    objective = build_objective(cfg, Progress(stream=io.StringIO(), live=False))
    sampled = estimate(
        get_spec("hpo-tiny-bert"), memory_request(BASE.model_copy(update={"batch_size": 32}), 2)
    )
    ckpt = estimate(
        get_spec("hpo-tiny-bert"),
        memory_request(BASE.model_copy(update={"batch_size": 32, "grad_checkpointing": True}), 2),
    )
    free = (sampled.device_total_bytes + ckpt.device_total_bytes) // 2 - CUDA_CONTEXT  # between the two
    ledger = Ledger(tmp_path / "runs" / "hpo.ledger.json", "sim", 2 * 1024 * MIB, poll_interval=0.01)
    admission = LedgerAdmission(ledger, CUDA_CONTEXT, 0, lighter_after=0.0)
    admission.start()
    ledger.reserve(2 * 1024 * MIB - CUDA_CONTEXT - free, label="a neighbour's trial")
    objective.admission = admission
    study = create_or_load(cfg)
    study.optimize(objective, n_trials=1, catch=(Exception,))
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE, trial.user_attrs
    assert trial.user_attrs["elastic_form"] == "gradient checkpointing"
    assert trial.user_attrs["run_config"]["grad_checkpointing"] is True
    assert trial.params["grad_checkpointing"] is False  # the sampled value stays the trial's param
    assert trial.user_attrs["trial_config"]["grad_checkpointing"] is False
    assert trial.user_attrs["run_estimated_peak_gb"] < trial.user_attrs["estimated_peak_gb"]
    run = MlflowClient(cfg.mlflow_tracking_uri).get_run(trial.user_attrs["mlflow_run_id"])
    assert run.data.params["elastic_form"] == "gradient checkpointing"
    assert run.data.params["run_grad_checkpointing"] == "True" and run.info.status == "FINISHED"
    row = trial_row(optuna.load_study(study_name=cfg.study, storage=cfg.storage_url).trials[0])
    assert row["ran_as"] == "gradient checkpointing" and row["wait_s"] >= 0  # `hpo trials` shows it
    admission.close()
    assert ledger.in_use() == 2 * 1024 * MIB - CUDA_CONTEXT - free  # only the neighbour is left
