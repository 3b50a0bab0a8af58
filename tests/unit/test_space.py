"""Search space: model-aware bounds, conditional parameters, device-dependent precision."""

from __future__ import annotations

import optuna
import pytest

from hpo.config.catalog import get_spec
from hpo.config.study import SpaceConfig
from hpo.device.gpu import load_profile
from hpo.errors import ConfigError, ModelError
from hpo.trial.space import SpaceContext, frozen_layers_cap, model_bounds, sample, validate


def sample_many(ctx: SpaceContext, n: int = 60) -> list[dict[str, object]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(n):
        trial = study.ask()
        cfg = sample(trial, ctx)
        out.append({"cfg": cfg, "params": dict(trial.params)})
        study.tell(trial, 0.5)
    return out


def test_large_models_get_narrower_bounds_on_24gb() -> None:
    ctx = SpaceContext(
        models=("roberta-large", "bert-base-uncased"),
        space=SpaceConfig(),
        on_cuda=True,
        profile=load_profile("24GB"),
    )
    for row in sample_many(ctx):
        cfg = row["cfg"]
        if cfg.model == "roberta-large":  # type: ignore[attr-defined]
            assert cfg.batch_size <= 16 and cfg.grad_accum <= 4 and cfg.max_length <= 384  # type: ignore[attr-defined]
        else:
            assert cfg.batch_size <= 64 and cfg.max_length <= 512  # type: ignore[attr-defined]


def test_narrowed_choices_get_their_own_parameter_name() -> None:
    ctx = SpaceContext(
        models=("roberta-large", "bert-base-uncased"),
        space=SpaceConfig(),
        on_cuda=True,
        profile=load_profile("24GB"),
    )
    names = {name for row in sample_many(ctx, 30) for name in row["params"]}  # type: ignore[attr-defined]
    assert "batch_size:8/16" in names and "batch_size" in names
    assert "max_length:128/256/384" in names


def test_conditional_parameters_only_when_they_take_effect() -> None:
    ctx = SpaceContext(models=("hpo-tiny-bert",), space=SpaceConfig(), on_cuda=False)
    rows = sample_many(ctx)
    for row in rows:
        cfg, params = row["cfg"], row["params"]
        assert ("label_smoothing" in params) == (cfg.loss == "label_smoothing")  # type: ignore[attr-defined]
        assert ("focal_gamma" in params) == (cfg.loss == "focal")  # type: ignore[attr-defined]
        assert "precision" not in params and cfg.precision == "fp32"  # type: ignore[attr-defined]
    assert {r["cfg"].loss for r in rows} == {"ce", "label_smoothing", "focal"}  # type: ignore[attr-defined]


def test_precision_sampled_on_cuda_without_bf16_when_unsupported() -> None:
    ctx = SpaceContext(models=("hpo-tiny-bert",), space=SpaceConfig(), on_cuda=True, bf16_supported=False)
    precisions = {r["cfg"].precision for r in sample_many(ctx)}  # type: ignore[attr-defined]
    assert precisions == {"fp32", "fp16"}


def test_frozen_layers_never_freeze_every_layer() -> None:
    assert frozen_layers_cap([get_spec("hpo-tiny-bert")], SpaceConfig()) == 1
    assert frozen_layers_cap([get_spec("bert-base-uncased")], SpaceConfig(frozen_layers_max=4)) == 4


def test_roberta_lengths_respect_position_embeddings() -> None:
    ctx = SpaceContext(
        models=("roberta-base",), space=SpaceConfig(max_length=[256, 512, 1024]), on_cuda=False
    )
    _, _, lengths = model_bounds(get_spec("roberta-base"), ctx)
    assert lengths == [256, 512]


def test_validate_rejects_unknown_models_and_empty_bounds() -> None:
    with pytest.raises(ModelError):
        validate(SpaceContext(models=("nope-model",), space=SpaceConfig(), on_cuda=False))
    tight = SpaceContext(
        models=("roberta-large",),
        space=SpaceConfig(batch_size=[32, 64]),
        on_cuda=True,
        profile=load_profile("24GB"),
    )
    with pytest.raises(ConfigError, match="roberta-large"):
        validate(tight)


def test_optimizers_are_sampled_and_8bit_needs_bitsandbytes_and_cuda(
    caplog: pytest.LogCaptureFixture,
) -> None:
    space = SpaceConfig(optimizer=["adamw", "adafactor", "adamw_8bit"])
    cpu = SpaceContext(models=("hpo-tiny-bert",), space=space, on_cuda=False)
    with caplog.at_level("WARNING"):
        validate(cpu)
    assert "adamw_8bit left out of the search space" in caplog.text
    assert {c["cfg"].optimizer for c in sample_many(cpu)} == {"adamw", "adafactor"}
    able = SpaceContext(models=("hpo-tiny-bert",), space=space, on_cuda=True, eight_bit=True)
    assert "adamw_8bit" in {c["cfg"].optimizer for c in sample_many(able)}
    single = SpaceContext(models=("hpo-tiny-bert",), space=SpaceConfig(), on_cuda=False)
    study = optuna.create_study()
    trial = study.ask()
    assert sample(trial, single).optimizer == "adamw" and "optimizer" not in trial.params  # not a parameter


def test_decoders_sample_lora_and_encoders_frozen_layers() -> None:
    ctx = SpaceContext(models=("hpo-tiny-llama", "bert-base-uncased"), space=SpaceConfig(), on_cuda=False)
    rows = sample_many(ctx)
    for row in rows:
        cfg, params = row["cfg"], row["params"]
        if cfg.model == "hpo-tiny-llama":  # type: ignore[attr-defined]
            assert cfg.lora_r in (8, 16, 32) and cfg.lora_alpha in (16, 32)  # type: ignore[attr-defined]
            assert cfg.frozen_layers == 0 and "frozen_layers" not in params  # type: ignore[attr-defined]
        else:
            assert cfg.lora_r == 0 and "lora_r" not in params  # type: ignore[attr-defined]
    assert {r["cfg"].model for r in rows} == {"hpo-tiny-llama", "bert-base-uncased"}  # type: ignore[attr-defined]
