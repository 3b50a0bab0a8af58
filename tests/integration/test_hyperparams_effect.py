"""Every sampled hyperparameter must change what is trained (the old tool sampled 20 values and used 8).

Each test trains the tiny model twice from the same seed, changing exactly one TrialConfig field, and shows a
difference in what was trained (final weights, optimizer steps, inputs seen, trainable set, recomputation).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from hpo.config.catalog import get_spec
from hpo.config.study import TrialConfig
from hpo.train.data import encode_pairs
from hpo.train.loop import _autocast
from hpo.train.model import build_model, trainable_parameters
from tests.integration.tiny_training import TINY, TOK, TRAIN, run
from tests.support import BASE


def differs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return any(not torch.allclose(a[k], b[k], atol=0, rtol=0) for k in a)


BASE_WEIGHTS, BASE_RESULT, _ = run(BASE)

CHANGES: dict[str, Any] = {
    "learning_rate": 3e-4,
    "weight_decay": 0.3,
    "batch_size": 32,
    "grad_accum": 2,
    "max_length": 24,
    "warmup_ratio": 0.5,
    "dropout": 0.3,
    "max_grad_norm": 0.05,
    "class_weighting": True,
    "frozen_layers": 1,
}


def test_base_run_is_deterministic() -> None:
    again, _, _ = run(BASE)
    assert not differs(BASE_WEIGHTS, again)


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_field_changes_training(field: str) -> None:
    weights, _, _ = run(BASE.model_copy(update={field: CHANGES[field]}))
    assert differs(BASE_WEIGHTS, weights), f"changing {field} did not change the trained weights"


@pytest.mark.parametrize("scheduler", ["linear", "cosine"])
def test_scheduler_changes_training(scheduler: str) -> None:
    weights, result, _ = run(BASE.model_copy(update={"scheduler": scheduler}))
    assert differs(BASE_WEIGHTS, weights)
    assert result.history[-1].learning_rate < BASE_RESULT.history[-1].learning_rate


@pytest.mark.parametrize(
    "loss,extra", [("label_smoothing", {"label_smoothing": 0.1}), ("focal", {"focal_gamma": 2.0})]
)
def test_loss_and_its_parameter_change_training(loss: str, extra: dict[str, float]) -> None:
    weights, _, _ = run(BASE.model_copy(update={"loss": loss, **extra}))
    assert differs(BASE_WEIGHTS, weights)
    key, value = next(iter(extra.items()))
    other, _, _ = run(BASE.model_copy(update={"loss": loss, key: value * 2}))
    assert differs(weights, other), f"{key} had no effect"


def test_grad_accum_changes_optimizer_steps() -> None:
    _, result, _ = run(BASE.model_copy(update={"grad_accum": 2}))
    assert result.optimizer_steps == (BASE_RESULT.optimizer_steps + 1) // 2


def test_frozen_layers_reduce_trainable_parameters_and_stay_fixed() -> None:
    weights, _, model = run(BASE.model_copy(update={"frozen_layers": 1}))
    fresh = build_model(TINY, num_labels=2, dropout=0.1, grad_checkpointing=False, frozen_layers=0, seed=0)
    assert trainable_parameters(model) < trainable_parameters(fresh)
    init = fresh.state_dict()
    layer0 = [k for k in weights if ".layer.0." in k and "weight" in k]
    assert layer0 and all(torch.equal(weights[k], init[k].float()) for k in layer0)


def test_dropout_sets_every_dropout_module() -> None:
    model = build_model(TINY, num_labels=2, dropout=0.27, grad_checkpointing=False, frozen_layers=0, seed=0)
    probs = {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}
    assert probs == {0.27}


def test_grad_checkpointing_recomputes_layers() -> None:
    calls = {"n": 0}

    def count(*_: Any) -> None:
        calls["n"] += 1

    counts = []
    for ckpt in (False, True):
        model = build_model(TINY, num_labels=2, dropout=0.0, grad_checkpointing=ckpt, frozen_layers=0, seed=0)
        model.train()
        calls["n"] = 0
        handle = model.bert.encoder.layer[0].attention.register_forward_hook(count)
        batch = encode_pairs(TOK, TRAIN[:4], 32)
        labels = batch.pop("labels")
        model(**batch, labels=labels).loss.backward()
        handle.remove()
        counts.append(calls["n"])
    assert counts == [1, 2], "checkpointing should run layer 0 forward again during backward"


def test_model_choice_changes_architecture() -> None:
    tiny = build_model(TINY, num_labels=2, dropout=0.1, grad_checkpointing=False, frozen_layers=0, seed=0)
    mini = build_model(
        get_spec("all-MiniLM-L6-v2"),
        num_labels=2,
        dropout=0.1,
        grad_checkpointing=False,
        frozen_layers=0,
        seed=0,
    )
    assert sum(p.numel() for p in mini.parameters()) > 50 * sum(p.numel() for p in tiny.parameters())


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_precision_selects_autocast_dtype_and_pure_bf16_casts_model() -> None:
    assert _autocast(torch.device("cpu"), "fp16").__class__.__name__ == "nullcontext"
    fp16 = _autocast(torch.device("cuda"), "fp16")
    bf16 = _autocast(torch.device("cuda"), "bf16")
    assert isinstance(fp16, torch.autocast) and fp16.fast_dtype == torch.float16
    assert isinstance(bf16, torch.autocast) and bf16.fast_dtype == torch.bfloat16
    _, _, model = run(BASE.model_copy(update={"precision": "bf16_pure"}))
    assert next(model.parameters()).dtype == torch.bfloat16


def test_every_trial_field_is_covered() -> None:
    covered = set(CHANGES) | {
        "scheduler",
        "loss",
        "label_smoothing",
        "focal_gamma",
        "grad_checkpointing",
        "model",
        "precision",
        "dropout",
        "lora_r",  # test_lora_decoder.py: the trainable count follows it
        "lora_alpha",  # test_lora_decoder.py: the trained weights follow it
        "lora_targets",  # test_lora_fields.py: peft wraps exactly the set's modules (trainable count follows)
        "lora_dropout",  # test_lora_fields.py: peft's adapter dropout is Dropout(p) when p > 0, else Identity
        "quant",  # test_lora_fields.py (refused on CPU, QLoRA config), test_lora_decoder.py::test_qlora_*
    }
    sampled = set(TrialConfig.model_fields) - {"optimizer"}  # optimizer is fixed (adamw), never sampled
    assert sampled <= covered


@pytest.mark.parametrize("optimizer", ["adafactor", "sgd"])
def test_optimizer_really_trains(optimizer: str) -> None:
    """adafactor (transformers' implementation) and sgd train: weights move away from the AdamW run's."""
    weights, result, _ = run(BASE.model_copy(update={"optimizer": optimizer}))
    assert result.optimizer_steps > 0 and all(torch.isfinite(w).all() for w in weights.values())
    assert any(not torch.equal(weights[k], BASE_WEIGHTS[k]) for k in weights)
