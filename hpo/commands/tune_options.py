"""What `hpo tune` was given on the command line, and the flags that name the classify agent's data columns.

Kept out of hpo.commands.tune so that the command module stays one page; the options are parsed once into
``TuneOptions`` and handed to hpo.config.study.load_config as overrides.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

# StudyConfig field -> the flag that sets it (an invalid value is blamed on the flag, not the YAML file)
FLAG_NAMES = {
    "n_trials": "--n-trials",
    "data_dir": "--data-dir",
    "output_dir": "--output-dir",
    "mlflow_uri": "--mlflow-uri",
    "gpu_memory": "--gpu-memory",
    "gpus": "--gpus",
    "on_oom": "--on-oom",
    "recycle_after": "--recycle-after",
    "elastic_after_s": "--elastic-after",
    "allow_changes": "--allow-changes",
    "allow_dirty_data": "--allow-dirty-data",
    "admission": "--admission",
    "storage_retry": "--storage-retry",
    "columns": "--text-col/--label-col/--group-col/--split-col",
    "objectives": "--objectives",
}


@dataclass
class TuneOptions:
    """What `hpo tune` was given on the command line (None = not given: the YAML or default applies)."""

    agent: str | None = None
    study: str | None = None
    n_trials: int | None = None
    storage: str | None = None
    data_dir: Path | None = None
    models: list[str] | None = None
    epochs: int | None = None
    patience: int | None = None
    seed: int | None = None
    timeout: float | None = None
    output_dir: Path | None = None
    mlflow_uri: str | None = None
    mlflow: bool | None = None
    report: bool | None = None
    gpu_memory: str | None = None
    gpus: list[str] | None = None
    host_memory: str | None = None
    on_oom: str | None = None
    device: str | None = None
    par: int | None = None
    recycle_after: int | None = None
    elastic: bool | None = None
    elastic_after_s: float | None = None
    allow_changes: bool | None = None
    allow_dirty_data: bool | None = None
    admission_timeout_s: float | None = None
    admission: str | None = None
    storage_retry: str | None = None
    columns: dict[str, str] | None = None  # --text-col, --label-col, ...: the classify agent's columns
    objectives: list[str] | None = None  # --objectives macro_f1,peak_memory: a multi-objective study

    def overrides(self) -> dict[str, Any]:
        """The StudyConfig fields set on the command line."""
        return {k: v for k, v in asdict(self).items() if v is not None}


TextColOpt = Annotated[
    str | None,
    typer.Option("--text-col", help="classify agent: the column holding the text (default: text)."),
]
TextPairColOpt = Annotated[
    str | None,
    typer.Option(
        "--text-pair-col", help="classify agent: a second text column, encoded as a pair with the first."
    ),
]
LabelColOpt = Annotated[
    str | None,
    typer.Option(
        "--label-col",
        help="classify agent: the label column (default: label), strings or ints; a list per row: "
        "multi-label.",
    ),
]
GroupColOpt = Annotated[
    str | None,
    typer.Option("--group-col", help="classify agent: rows with one value here never straddle two splits."),
]
SplitColOpt = Annotated[
    str | None,
    typer.Option(
        "--split-col",
        help="classify agent: a train/validation/test column (default: a seeded stratified split).",
    ),
]

VerboseOpt = Annotated[
    bool,
    typer.Option(
        "--verbose", help="Show third-party INFO logs (MLflow, Optuna, transformers ...); off: warnings only."
    ),
]


ObjectivesOpt = Annotated[
    str | None,
    typer.Option(
        "--objectives",
        help="Multi-objective study: the agent's metric first, then any of peak_memory (GB), train_time (s), "
        "latency (ms/example), e.g. macro_f1,peak_memory. `hpo best` shows the Pareto front. No per-epoch "
        "pruning in such a study (Optuna does not support it); OOM pruning still works.",
    ),
]


def columns_override(
    text: str | None, text_pair: str | None, label: str | None, group: str | None, split: str | None
) -> dict[str, str] | None:
    """The ``columns`` settings given as flags (None when none was): they override the YAML's one by one."""
    given = {"text": text, "text_pair": text_pair, "label": label, "group": group, "split": split}
    out = {k: v for k, v in given.items() if v is not None}
    return out or None
