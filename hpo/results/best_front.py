"""`hpo best` on a multi-objective study (``hpo tune --objectives``): the Pareto front as a table or JSON,
and ``--evaluate --pick N`` scores front member N on the test split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from hpo.config.study import StudyConfig
from hpo.errors import ConfigError, StorageError
from hpo.results.best import DIGITS, TEST_EVALUATION, no_complete_trial, show_best
from hpo.results.pareto import front_trials, objective_names, unit
from hpo.results.report_summary import fmt
from hpo.results.trials import KEY_PARAMS, count_states
from hpo.storage.study import CONFIG_ATTR, load_existing
from hpo.trial import keys as K


def front_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One JSON-able row per front trial: number, each objective's value, its config, MLflow run."""
    names, rows = objective_names(study), []
    for t in _front(study):
        config = t.user_attrs.get(K.FINAL_CONFIG) or t.user_attrs.get(K.TRIAL_CONFIG) or dict(t.params)
        rows.append(
            {
                "number": t.number,
                "values": dict(zip(names, t.values, strict=True)),
                "params": {k: config.get(k) for k in KEY_PARAMS if k in config},
                "config": config,
                "mlflow_run_id": t.user_attrs.get(K.MLFLOW_RUN_ID),
            }
        )
    return rows


def _front(study: optuna.Study) -> list[FrozenTrial]:
    trials = front_trials(study)
    if not trials:
        target = (study.user_attrs.get(CONFIG_ATTR) or {}).get("n_trials")
        detail, fix = no_complete_trial(study.study_name, count_states(study), target)
        raise StorageError(f"study '{study.study_name}' has no complete trial yet: {detail}", fix)
    return trials


def render_front(study: optuna.Study, rows: list[dict[str, Any]]) -> str:
    """The front as an aligned text table: trial, each objective (with its unit), the key params."""
    names = objective_names(study)
    dirs = ["max" if d.name == "MAXIMIZE" else "min" for d in study.directions]
    heads = ["trial"] + [
        f"{n} ({unit(n) + ', ' if unit(n) else ''}{d})" for n, d in zip(names, dirs, strict=True)
    ]
    params = [k for k in KEY_PARAMS if any(k in r["params"] for r in rows)]
    table = [heads + params]
    for r in rows:
        cells = [str(r["number"])] + [f"{r['values'][n]:.4f}" for n in names]
        table.append(cells + [fmt(r["params"].get(k, ""), DIGITS) for k in params])
    widths = [max(len(row[i]) for row in table) for i in range(len(heads) + len(params))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table]
    title = f"Pareto front of study '{study.study_name}': {len(rows)} trial(s) no other trial beats"
    return "\n".join([title, *lines, "evaluate one on the test split: hpo best --evaluate --pick <trial>"])


def show(
    study: str, storage_url: str, evaluate: bool, data_dir: Path | None, as_json: bool, pick: int | None
) -> str:
    """`hpo best`: the Pareto front of a multi-objective study, else the best trial (hpo.results.best)."""
    s = load_existing(study, storage_url)
    if len(s.directions) == 1:
        if pick is not None:
            raise ConfigError(
                "--pick is for multi-objective studies", "drop --pick: --evaluate scores the best"
            )
        return show_best(study, storage_url, evaluate, data_dir, as_json)
    return show_front(s, evaluate, pick, data_dir, as_json)


def show_front(
    study: optuna.Study, evaluate: bool, pick: int | None, data_dir: Path | None, as_json: bool
) -> str:
    """`hpo best` on a multi-objective study."""
    rows = front_rows(study)
    out: dict[str, Any] = {"objectives": objective_names(study), "front": rows, "test": None}
    if evaluate:
        on_front = [r["number"] for r in rows]
        if pick is None or pick not in on_front:
            what = (
                "--evaluate on a multi-objective study needs --pick"
                if pick is None
                else (f"trial {pick} is not on the Pareto front")
            )
            raise ConfigError(what, f"pick one of trials {', '.join(map(str, on_front))}: --pick N")
        from hpo.results.evaluate import evaluate_best  # lazy: training imports torch

        stored = dict(study.user_attrs.get(CONFIG_ATTR) or {})
        if data_dir is not None:
            stored["data_dir"] = str(data_dir)
        trial = next(t for t in front_trials(study) if t.number == pick)
        out["test"] = evaluate_best(StudyConfig.model_validate(stored), study, trial)
        study.set_user_attr(TEST_EVALUATION, out["test"])
    if as_json:
        return json.dumps(out, indent=2, default=str)
    text = render_front(study, rows)
    if out["test"]:
        shown = (f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in out["test"].items())
        text += f"\ntrial {pick} on the test split: " + ", ".join(shown)
    return text
