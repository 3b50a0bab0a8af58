"""Data behind `hpo oom` and `hpo trials --state/--reason`, read from Optuna or MLflow.

Conventions the objective and tracker follow:

- Optuna: an OOM trial has user attrs ``oom=True``, ``oom_config`` (``OomRecord.to_dict()``) and
  ``pruned_reason="oom"``; a trial pruned before training by the estimator has
  ``pruned_reason="memory_estimate"`` and ``estimated_peak_gb``; one pruned by the pruner or early stopping
  has ``pruned_reason="early_stop"``.
- MLflow (experiment name = study name): the child run of an OOM trial has param ``oom_error=True``,
  params ``oom_<field>`` for each ``OomRecord`` field, artifact ``oom_config.json``, tag ``oom=true``,
  tag ``trial_number`` and status FAILED.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hpo.device.oom import OOM_FIELDS
from hpo.errors import ConfigError, StorageError
from hpo.storage.dbcheck import sqlite_path
from hpo.storage.study import load_existing
from hpo.trial import keys as K
from hpo.trial.keys import TRIAL_NUMBER_TAG

if TYPE_CHECKING:
    import optuna

ROW_KEYS: tuple[str, ...] = (
    "number",
    "model",
    "batch_size",
    "grad_accum",
    "max_length",
    "precision",
    "grad_checkpointing",
    "epoch",
    "step",
    "estimated_peak_gb",
    "measured_peak_gb",
    "error_head",
)
_INTS = {"number", "batch_size", "grad_accum", "max_length", "epoch", "step"}
_FLOATS = {"estimated_peak_gb", "measured_peak_gb"}
_COLUMNS = (
    ("number", "trial"),
    ("model", "model"),
    ("batch_size", "batch"),
    ("grad_accum", "accum"),
    ("max_length", "max_len"),
    ("precision", "precision"),
    ("grad_checkpointing", "ckpt"),
    ("epoch", "epoch"),
    ("step", "step"),
    ("estimated_peak_gb", "est_gb"),
    ("measured_peak_gb", "meas_gb"),
    ("error_head", "error"),
)


def _coerce(key: str, value: Any) -> Any:
    """MLflow params are strings: turn them back into ints, floats, bools and None."""
    if value is None or not isinstance(value, str):
        return value
    if value in ("None", ""):
        return None
    try:
        if key in _INTS:
            return int(value)
        if key in _FLOATS:
            return float(value)
    except ValueError:
        return value
    if key == "grad_checkpointing":
        return value.lower() == "true"
    return value


def _row(number: Any, *sources: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"number": _coerce("number", number)}
    for key in ROW_KEYS[1:]:
        value = next((s[key] for s in sources if s.get(key) is not None), None)
        row[key] = _coerce(key, value)
    return row


def oom_rows_from_optuna(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per trial with user attr ``oom=True``, from its ``oom_config`` (params fill gaps)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get(K.OOM) is not True:
            continue
        record = t.user_attrs.get(K.OOM_CONFIG) or {}
        rows.append(_row(t.number, record, t.params))
    return sorted(rows, key=lambda r: r["number"])


def oom_rows_from_mlflow(tracking_uri: str, experiment_name: str) -> list[dict[str, Any]]:
    """One row per MLflow run with param ``oom_error=True`` in the study's experiment."""
    db = sqlite_path(tracking_uri)
    if db is not None and not db.is_file():  # MLflow would create an empty database there
        raise StorageError(
            f"no MLflow database at {db.resolve()}",
            "pass the --output-dir (or --mlflow-uri) the study was run with",
        )
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment_name)
    if exp is None:
        raise StorageError(
            f"no MLflow experiment named {experiment_name!r} at {tracking_uri}",
            "pass the study name and the --mlflow-uri the study was run with",
        )
    rows, token = [], None
    while True:
        page = client.search_runs(
            [exp.experiment_id],
            filter_string=f"params.{K.OOM_ERROR_PARAM} = 'True'",
            max_results=1000,
            page_token=token,
        )
        for run in page:
            params, tags = run.data.params, run.data.tags
            pre = K.OOM_PARAM_PREFIX
            oom = {f: params[f"{pre}{f}"] for f in OOM_FIELDS if f"{pre}{f}" in params}
            rows.append(_row(tags.get(TRIAL_NUMBER_TAG), oom, params, tags))
        token = page.token
        if not token:
            break
    return sorted(rows, key=lambda r: (r["number"] is None, r["number"] or 0))


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Count, models, and per model the smallest failing (batch_size, max_length) by their product."""
    smallest: dict[str, dict[str, int]] = {}
    for r in rows:
        model, b, length = r.get("model"), r.get("batch_size"), r.get("max_length")
        if model is None or b is None or length is None:
            continue
        cur = smallest.get(model)
        if cur is None or (b * length, b) < (cur["batch_size"] * cur["max_length"], cur["batch_size"]):
            smallest[model] = {"batch_size": b, "max_length": length}
    models = sorted({r["model"] for r in rows if r.get("model") is not None})
    return {"count": len(rows), "models": models, "smallest_failing": dict(sorted(smallest.items()))}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def summary_line(summary: Mapping[str, Any]) -> str:
    n = summary["count"]
    if n == 0:
        return "no OOM trials"
    smallest = ", ".join(
        f"{m} {s['batch_size']}x{s['max_length']}" for m, s in summary["smallest_failing"].items()
    )
    line = f"{n} OOM trial{'s' if n != 1 else ''}; models: {', '.join(summary['models']) or '-'}"
    return f"{line}; smallest failing: {smallest}" if smallest else line


def render_oom_table(rows: list[dict[str, Any]], summary: Mapping[str, Any]) -> str:
    """Aligned plain-text table (one line per OOM trial) followed by the summary line."""
    if not rows:
        return summary_line(summary)
    table = [[title for _, title in _COLUMNS]]
    table += [[_cell(r.get(key)) for key, _ in _COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(_COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table]
    return "\n".join([*lines, "", summary_line(summary)])


def show_oom(study: str, storage_url: str, source: str, mlflow_uri: str, as_json: bool) -> str:
    """`hpo oom`: the study's OOM trials from Optuna user attrs or MLflow runs, with a summary line."""
    if source == "optuna":
        rows = oom_rows_from_optuna(load_existing(study, storage_url))
    elif source == "mlflow":
        rows = oom_rows_from_mlflow(mlflow_uri, study)
    else:
        raise ConfigError(f"unknown --source '{source}'", "use optuna or mlflow")
    summary = summarize(rows)
    if as_json:
        return json.dumps({"rows": rows, "summary": summary}, indent=2, default=str)
    return render_oom_table(rows, summary)
