"""Decoder classifiers train LoRA adapters (peft) on CPU: the shipped hpo-tiny-llama, through the trainer and
through `hpo tune`; only the adapters and the classification head change, and lora_r changes what trains."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
from typer.testing import CliRunner

from hpo.commands import app
from hpo.config.catalog import get_spec
from hpo.memory.budget import MemoryRequest
from hpo.memory.estimate import param_counts
from hpo.train.data import encode_pairs
from hpo.train.loop import train
from hpo.train.model import build_model, load_tokenizer, trainable_parameters
from tests.integration.tiny_training import AGENT, TRAIN
from tests.support import BASE, CI_CONFIG

LLAMA = get_spec("hpo-tiny-llama")


def lora_model(rank: int) -> torch.nn.Module:
    return build_model(
        LLAMA, num_labels=2, dropout=0.0, grad_checkpointing=False, frozen_layers=0, seed=0, lora_r=rank
    )


@pytest.mark.parametrize("rank", [4, 16])
def test_trainable_parameters_are_the_estimates_adapters_and_head(rank: int) -> None:
    model = lora_model(rank)
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or ".score." in n for n in trainable)
    counts = param_counts(LLAMA, MemoryRequest(8, 64, lora_r=rank))
    assert sum(v for n, v in trainable.items() if "lora_" in n) == counts.adapters
    assert sum(v for n, v in trainable.items() if ".score." in n) == counts.trainable


def test_lora_rank_changes_the_trainable_count() -> None:
    counts = [trainable_parameters(lora_model(r)) for r in (4, 8, 16)]
    assert counts[0] < counts[1] < counts[2]
    assert trainable_parameters(lora_model(0)) > 10 * counts[2]  # rank 0: the whole model (no adapters)


def lora_training(alpha: int = 16) -> tuple[torch.nn.Module, dict[str, torch.Tensor], int]:
    """One epoch of LoRA rank 8 on the tiny decoder: the model, its weights before, optimizer steps."""
    cfg = BASE.model_copy(update={"model": "hpo-tiny-llama", "lora_r": 8, "lora_alpha": alpha})
    cfg = cfg.model_copy(update={"learning_rate": 5e-3})
    model = build_model(
        LLAMA, num_labels=2, dropout=0.0, grad_checkpointing=False, frozen_layers=0, seed=0, lora_r=8,
        lora_alpha=alpha,
    )  # fmt: skip
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    data = encode_pairs(load_tokenizer(LLAMA), TRAIN, cfg.max_length, "longest")
    result = train(
        model, cfg, data, data, score=AGENT.score, num_labels=2, epochs=1, patience=9,
        device=torch.device("cpu"), seed=0,
    )  # fmt: skip
    return model, before, result.optimizer_steps


def test_training_changes_only_adapters_and_head() -> None:
    model, before, steps = lora_training()
    assert steps > 0
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all("lora_B" in k or "lora_A" in k or ".score." in k for k in changed)
    assert any("lora_B" in k for k in changed)  # B starts at zero: it moved, so the adapters trained


def test_lora_alpha_changes_training() -> None:
    """alpha scales the adapters' update (alpha / r): same seed and data, different weights."""
    low, _, _ = lora_training(16)
    high, _, _ = lora_training(32)
    a, b = low.state_dict(), high.state_dict()
    assert any(not torch.allclose(a[k], b[k]) for k in a if "lora_B" in k or ".score." in k)


def test_tune_runs_lora_trials_of_the_tiny_decoder(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    args = ["tune", "--config", str(CI_CONFIG), "--models", "hpo-tiny-llama", "--output-dir", str(out)]
    res = CliRunner().invoke(app, [*args, "--n-trials", "2"])
    assert res.exit_code == 0, res.output
    study = optuna.load_study(study_name="ci-tiny", storage=f"sqlite:///{out / 'hpo.db'}")
    done = [t for t in study.trials if t.state.is_finished()]
    assert len(done) == 2
    for t in done:
        assert t.params["model"] == "hpo-tiny-llama" and t.params["lora_r"] in (8, 16, 32)
        assert "frozen_layers" not in t.params
        assert t.user_attrs["trial_config"]["lora_r"] == t.params["lora_r"]
        stored = t.user_attrs["trial_config"]
        assert stored["lora_targets"] == t.params["lora_targets"] in ("q_v", "all_linear")
        assert stored["lora_dropout"] == t.params["lora_dropout"] and stored["quant"] == "none"  # CPU


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("quant", ["4bit", "8bit"])
def test_qlora_trains_only_adapters_and_head_on_a_quantised_base(quant: str) -> None:
    pytest.importorskip("bitsandbytes")
    cfg = BASE.model_copy(
        update={
            "model": "hpo-tiny-llama",
            "lora_r": 8,
            "learning_rate": 5e-3,
            "quant": quant,
            "precision": "bf16",
        }
    )
    model = build_model(
        LLAMA, num_labels=2, dropout=0.0, grad_checkpointing=True, frozen_layers=0, seed=0, lora_r=8,
        lora_dropout=0.05, lora_targets="all_linear", quant=quant,
    )  # fmt: skip
    kinds = {type(m).__name__ for m in model.modules()}
    assert kinds & {"Linear4bit", "Linear8bitLt"}, kinds
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    data = encode_pairs(load_tokenizer(LLAMA), TRAIN, cfg.max_length, "longest")
    result = train(
        model, cfg, data, data, score=AGENT.score, num_labels=2, epochs=1, patience=9,
        device=torch.device("cuda"), seed=0,
    )  # fmt: skip
    assert result.optimizer_steps > 0
    after = model.state_dict()
    changed = {k for k, v in after.items() if v.shape == before[k].shape and not torch.equal(v, before[k])}
    assert changed and all("lora_" in k or ".score." in k for k in changed)
