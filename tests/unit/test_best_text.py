"""`hpo best` as text: only the fields the best config uses, floats to 4 significant digits; `--json` keeps
the whole config at full precision. The Pareto front's param cells are rounded the same way."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
from typer.testing import CliRunner

from hpo.commands import app
from hpo.trial import keys as K

runner = CliRunner()
LR = 3.1622776601683795e-05
CONFIG = {"model": "hpo-tiny-bert", "learning_rate": LR, "dropout": 0.12345678, "batch_size": 16,
          "loss": "ce", "label_smoothing": 0.0, "focal_gamma": 2.0, "lora_r": 0, "lora_alpha": 16,
          "lora_dropout": 0.05, "lora_targets": "q_v", "quant": "none", "precision": "fp32"}  # fmt: skip
UNUSED = ("lora_r", "lora_alpha", "lora_dropout", "lora_targets", "quant", "label_smoothing", "focal_gamma")


def _storage(tmp_path: Path, directions: list[str], values: list[list[float]]) -> str:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    study = optuna.create_study(study_name="s", storage=url, directions=directions)
    for i, v in enumerate(values):
        attrs = {K.TRIAL_CONFIG: {**CONFIG, "learning_rate": LR * (i + 1)}, K.BEST_EPOCH: 1}
        attrs[K.FINAL_CONFIG] = attrs[K.TRIAL_CONFIG]
        study.add_trial(optuna.trial.create_trial(values=v, params={}, distributions={}, user_attrs=attrs))
    return url


def _best(url: str, *extra: str) -> str:
    result = runner.invoke(app, ["best", "--study", "s", "--storage", url, *extra])
    assert result.exit_code == 0, result.output
    return result.output


def test_best_text_shows_used_fields_rounded(tmp_path: Path) -> None:
    url = _storage(tmp_path, ["maximize"], [[0.8], [0.7]])
    text = _best(url)
    assert text.startswith("best trial 0: value 0.8000")
    shown = {line.split()[0]: line.split()[1] for line in text.splitlines()[1:]}
    assert shown["learning_rate"] == "3.162e-05" and shown["dropout"] == "0.1235"
    assert shown["batch_size"] == "16" and shown["model"] == "hpo-tiny-bert"
    assert not set(UNUSED) & set(shown), shown
    assert "3.1622776601683795e-05" not in text


def test_best_json_keeps_the_full_config(tmp_path: Path) -> None:
    out = json.loads(_best(_storage(tmp_path, ["maximize"], [[0.8], [0.7]]), "--json"))
    assert out["config"] == CONFIG and out["config"]["learning_rate"] == LR


def test_front_table_rounds_params_to_4_digits(tmp_path: Path) -> None:
    text = _best(_storage(tmp_path, ["maximize", "minimize"], [[0.8, 2.0], [0.9, 4.0]]))
    assert "3.162e-05" in text and "6.325e-05" in text and "3.1622776601683795e-05" not in text
