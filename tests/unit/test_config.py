"""Config loading: precedence, validation, every shipped YAML."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hpo.config.catalog import catalog_names, get_spec
from hpo.config.study import StudyConfig, load_config
from hpo.device.gpu import load_profile
from hpo.errors import ConfigError
from tests.support import REPO

STUDIES = sorted((REPO / "configs" / "studies").glob("*.yaml"))
AGENTS = sorted((REPO / "configs" / "agents").glob("*.yaml"))


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_every_study_yaml_validates(path: Path) -> None:
    cfg = load_config(path)
    for model in cfg.models:
        get_spec(model)


@pytest.mark.parametrize("path", AGENTS, ids=lambda p: p.name)
def test_every_agent_yaml_validates(path: Path) -> None:
    StudyConfig.model_validate(yaml.safe_load(path.read_text()))


def test_every_catalog_model_resolves() -> None:
    for name in catalog_names():
        spec = get_spec(name)
        assert spec.params > 0 and spec.num_layers > 0


def test_precedence_cli_over_yaml_over_agent(tmp_path: Path) -> None:
    study = tmp_path / "s.yaml"
    study.write_text("study: mine\nepochs: 7\nspace:\n  batch_size: [4, 8]\n")
    cfg = load_config(study, {"epochs": 9, "seed": None})
    assert cfg.study == "mine" and cfg.epochs == 9  # CLI wins, None = not given
    assert cfg.space.batch_size == [4, 8]  # YAML over agent
    assert cfg.space.max_length == [128, 256, 384, 512]  # agent default kept (deep merge)
    assert cfg.seed == 42


def test_storage_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTUNA_STORAGE", "sqlite:////tmp/x.db")
    assert load_config(None).storage_url == "sqlite:////tmp/x.db"
    assert load_config(None, {"storage": "sqlite:////tmp/y.db"}).storage_url == "sqlite:////tmp/y.db"


def test_default_storage_and_mlflow_under_output_dir(tmp_path: Path) -> None:
    cfg = load_config(None, {"output_dir": tmp_path})
    assert cfg.storage_url == f"sqlite:///{(tmp_path / 'hpo.db').resolve()}"
    assert cfg.mlflow_tracking_uri == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"


@pytest.mark.parametrize(
    "override,needle",
    [
        ({"n_trials": 0}, "--n-trials"),
        ({"epochs": -1}, "--epochs"),
        ({"on_oom": "explode"}, "--on-oom"),
        ({"models": []}, "models"),
        ({"space": {"learning_rate": [1e-3, 1e-5]}}, "learning_rate"),
        ({"space": {"batch_size": []}}, "batch_size"),
    ],
)
def test_invalid_values_are_one_line_config_errors(override: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, override)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_gpu_profile_for_24gb_reproduces_known_safe_bounds() -> None:
    profile = load_profile("24GB")
    large = profile.bounds(get_spec("roberta-large").params)
    base = profile.bounds(get_spec("bert-base-uncased").params)
    assert (large.max_batch_size, large.max_grad_accum, large.max_length) == (16, 4, 384)
    assert (base.max_batch_size, base.max_grad_accum, base.max_length) == (64, 8, 512)
    wide = load_profile("80GB").bounds(get_spec("roberta-large").params)
    assert wide.max_batch_size >= 16 and wide.max_length >= 384
