"""Every StudyConfig field is decided fingerprinted or not (hpo.config.fingerprint); the trial-defining
settings are refused on resume; studies fingerprinted before those settings joined still resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest

from hpo.config.fingerprint import HOW_TO_DECIDE, SETTINGS, fingerprinted
from hpo.config.study import StudyConfig, load_config
from hpo.errors import ConfigError
from hpo.run.bootstrap import start_study
from hpo.run.fingerprint import FINGERPRINT_ATTR, check_resume, data_fingerprint, fingerprint
from hpo.run.setup import Setup, prepare
from hpo.storage.study import CONFIG_ATTR
from tests.support import CI_CONFIG


def config(out: Path, **over: object) -> StudyConfig:
    return load_config(CI_CONFIG, {"output_dir": out, "mlflow": False, **over})


def started(out: Path, **over: object) -> tuple[optuna.Study, StudyConfig, Setup]:
    cfg = config(out, **over)
    setup = prepare(cfg)
    study, _ = start_study(cfg, setup)
    return study, cfg, setup


def test_every_config_field_is_decided_fingerprinted_or_not() -> None:
    undecided = sorted(set(StudyConfig.model_fields) - set(SETTINGS))
    assert not undecided, f"StudyConfig field(s) {undecided} not classified: {HOW_TO_DECIDE}"
    stale = sorted(set(SETTINGS) - set(StudyConfig.model_fields))
    assert not stale, f"hpo/config/fingerprint.py SETTINGS lists {stale}, no longer StudyConfig fields"
    assert all(role.why for role in SETTINGS.values())


def test_the_fingerprint_holds_exactly_the_fingerprinted_settings(tmp_path: Path) -> None:
    cfg = config(tmp_path / "runs")
    keys = set(fingerprint(cfg, prepare(cfg)))
    assert keys == (set(fingerprinted()) - {"data_dir"}) | {"data", "metric"}
    for name in ("max_train_examples", "padding", "group_by_length", "eval_batch_size"):
        assert SETTINGS[name].fingerprinted, name


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_train_examples", 40),
        ("padding", "max_length"),
        ("group_by_length", True),
        ("eval_batch_size", 8),
    ],
)
def test_a_trial_defining_setting_changed_on_resume_is_refused(
    tmp_path: Path, field: str, value: Any
) -> None:
    out = tmp_path / "runs"
    study, _, _ = started(out)
    cfg = config(out, **{field: value})
    with pytest.raises(ConfigError, match=rf"{field} was .*, now {value}") as err:
        check_resume(study, cfg, prepare(cfg), allow_changes=True)  # not a compatible change either
    assert "new --study" in (err.value.fix or "")


def old_format(cfg: StudyConfig, setup: Setup) -> dict[str, Any]:
    """The fingerprint as hpo stored it before the settings above joined it (its code, verbatim)."""
    rows = sum(setup.splits.sizes().values())
    return {
        "agent": cfg.agent,
        "metric": setup.agent.metric_name,
        "models": list(cfg.models),
        "seed": cfg.seed,
        "epochs": cfg.epochs,
        "patience": cfg.patience,
        "space": cfg.space.model_dump(mode="json"),
        "data": data_fingerprint(cfg.data_dir, rows),
    }


def test_a_study_with_an_old_format_fingerprint_resumes_and_is_checked_in_full(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    study, cfg, setup = started(out, max_train_examples=40)  # made with a non-default cap
    study.set_user_attr(FINGERPRINT_ATTR, old_format(cfg, setup))
    assert check_resume(study, cfg, setup, allow_changes=False) == []  # same settings: resumes
    assert study.user_attrs[FINGERPRINT_ATTR] == fingerprint(cfg, setup)  # ...stored in full from now on
    study.set_user_attr(FINGERPRINT_ATTR, old_format(cfg, setup))
    for over in ({"max_train_examples": None}, {"max_train_examples": 40, "padding": "max_length"}):
        changed, field = config(out, **over), list(over)[-1]
        with pytest.raises(ConfigError, match=field):  # the stored config says what the study was made with
            check_resume(study, changed, prepare(changed), allow_changes=True)
    assert study.user_attrs[FINGERPRINT_ATTR] == old_format(cfg, setup)  # a refused resume writes nothing


def test_a_study_without_the_setting_in_its_stored_config_takes_the_default(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    study, cfg, setup = started(out)
    stored = {k: v for k, v in study.user_attrs[CONFIG_ATTR].items() if k != "eval_batch_size"}
    study.set_user_attr(CONFIG_ATTR, stored)
    study.set_user_attr(FINGERPRINT_ATTR, old_format(cfg, setup))
    default = StudyConfig.model_fields["eval_batch_size"].default
    assert cfg.eval_batch_size != default  # ci-tiny sets its own
    with pytest.raises(ConfigError, match=rf"eval_batch_size was {default}, now {cfg.eval_batch_size}"):
        check_resume(study, cfg, setup, allow_changes=False)
    same = config(out, eval_batch_size=default)
    assert check_resume(study, same, prepare(same), allow_changes=False) == []
