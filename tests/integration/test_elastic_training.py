"""Elastic forms train the same model (tiny BERT), and the objective runs a waiting trial lighter."""

from __future__ import annotations

import io
from pathlib import Path

import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from hpo.config.catalog import get_spec
from hpo.config.study import load_config
from hpo.memory.budget import CUDA_CONTEXT
from hpo.progress import Progress
from hpo.results.trials import trial_row
from hpo.run.ledger import Ledger
from hpo.run.setup import build_objective
from hpo.run.worker import LedgerAdmission
from hpo.storage.study import create_or_load
from hpo.trial.elastic import lighter_forms
from tests.integration.tiny_training import run
from tests.support import BASE, REPO

MIB = 2**20


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
    # the objective's own sizer: it estimates at the widest batch the data gives (dynamic padding)
    spec, form = get_spec("hpo-tiny-bert"), BASE.model_copy(update={"batch_size": 32})
    sampled = objective.sizer.estimate(spec, form)
    ckpt = objective.sizer.estimate(spec, form.model_copy(update={"grad_checkpointing": True}))
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
