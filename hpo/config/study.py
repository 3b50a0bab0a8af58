"""Typed configuration. Precedence: CLI flag > study YAML > agent YAML > defaults, validated by pydantic."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hpo.config.columns import ColumnsConfig
from hpo.config.trial import (  # noqa: F401  re-exported: hpo.config stays the one import
    Loss,
    Optimizer,
    Precision,
    Scheduler,
    SpaceConfig,
    TrialConfig,
)
from hpo.config.yaml_file import read_yaml
from hpo.errors import ConfigError
from hpo.paths import CONFIG_DIR, SAMPLE_DATA_DIR
from hpo.redact import is_redacted
from hpo.units import parse_duration, parse_memory

OnOom = Literal["prune", "shrink", "cpu"]
# ledger: trials are admitted by estimated memory (hpo.run.ledger); none: a baseline for benchmarks, the old
# fixed-PAR way (no ledger, no allocator cap, no pruning by estimate: every config runs, OOM or not)
AdmissionMode = Literal["ledger", "none"]
DEFAULT_OUTPUT_DIR = Path("runs")
MAX_PAR = 32  # worker processes on one GPU; each holds a CUDA context
# --objectives after the agent's metric (hpo.trial.objectives computes them); each is minimised
SECONDARY_OBJECTIVES = {"peak_memory": "GB", "train_time": "s", "latency": "ms/example"}


class _Strict(BaseModel):  # as hpo.config.trial's: unknown keys are errors
    model_config = ConfigDict(extra="forbid", frozen=False)


class SamplerConfig(_Strict):
    """TPE settings (Optuna 5 defaults to multivariate + constant_liar; we also group)."""

    n_startup_trials: int = Field(5, ge=0)
    multivariate: bool = True
    group: bool = True
    constant_liar: bool = True


class PrunerConfig(_Strict):
    """Hyperband over epochs, wrapped in a PatientPruner."""

    min_resource: int = Field(1, ge=1)
    reduction_factor: int = Field(3, ge=2)
    patience: int = Field(2, ge=0)
    min_delta: float = Field(0.0, ge=0.0)


class StudyConfig(_Strict):
    """Everything one `hpo tune` run needs."""

    study: str = Field("criteria", min_length=1)
    agent: str = "criteria"
    n_trials: int = Field(20, ge=1)
    timeout: float | None = Field(None, gt=0)
    epochs: int = Field(3, ge=1)
    patience: int = Field(2, ge=1)
    seed: int = 42
    models: list[str] = ["all-MiniLM-L6-v2"]
    output_dir: Path = DEFAULT_OUTPUT_DIR
    data_dir: Path = SAMPLE_DATA_DIR
    columns: ColumnsConfig = Field(default_factory=ColumnsConfig)  # the classify agent's data columns
    storage: str | None = None
    mlflow_uri: str | None = None
    mlflow: bool = True
    report: bool = True  # write `hpo report` at the end of `hpo tune` and log it on the MLflow parent run
    gpu_memory: str | None = None
    gpus: list[int] | None = None  # --gpus: GPU indices, --par workers each (None: every visible GPU)
    host_memory: str | None = None  # --par: host RAM the trials may use (None: what is available at start)
    headroom_gb: float | None = Field(None, ge=0.0)  # None: the GPU profile's (hpo.device.gpu.headroom_bytes)
    high_memory_fraction: float = Field(0.9, gt=0.0, le=1.0)  # trials above it are tagged high_memory
    on_oom: OnOom = "prune"
    prune_by_estimate: bool = True  # False: let over-budget configs run (they OOM; for tests of the OOM path)
    eval_batch_size: int = Field(64, ge=1)
    padding: Literal["dynamic", "max_length"] = "dynamic"  # batches padded to their longest member, or full
    group_by_length: bool = False  # order each epoch by length within accumulation windows
    max_train_examples: int | None = Field(None, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int | None = Field(None, ge=1)
    faults: dict[str, Any] | None = None  # fault injection (hpo/device/faults.py); HPO_INJECT_OOM wins
    par: int = Field(1, ge=1, le=MAX_PAR)
    allow_changes: bool = False  # resume with compatible changes (hpo/run/fingerprint.py)
    allow_dirty_data: bool = False  # dirty rows dropped with a warning (hpo/train/data.py)
    elastic: bool = True  # --par: run a waiting trial in a lighter equivalent form (hpo/trial/elastic.py)
    elastic_after_s: float = Field(60.0, ge=0.0)  # ...once it has waited this long for room
    admission_timeout_s: float | None = Field(None, gt=0.0)  # --par: prune a trial after waiting this long
    admission: AdmissionMode = "ledger"  # --admission none: fixed-PAR baseline for benchmarks (see above)
    recycle_after: int = Field(50, ge=1)
    max_worker_deaths: int = Field(3, ge=1)  # --par: stop after K worker deaths in a row (hpo/run/deaths.py)
    storage_retry: str = "10m"  # storage calls wait out an outage this long (hpo/storage/retry.py)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    pruner: PrunerConfig = Field(default_factory=PrunerConfig)
    space: SpaceConfig = Field(default_factory=SpaceConfig)
    objectives: list[str] | None = None  # multi-objective: the agent's metric, then SECONDARY_OBJECTIVES

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        v = [o.strip() for o in v if o.strip()]
        known = ", ".join(SECONDARY_OBJECTIVES)
        if not v or v[0] in SECONDARY_OBJECTIVES:
            raise ValueError(f"list the agent's metric first, then any of {known}, e.g. macro_f1,peak_memory")
        dup = next((o for i, o in enumerate(v) if o in v[:i]), None)
        if dup is not None:
            raise ValueError(f"'{dup}' is listed twice")
        unknown = [o for o in v[1:] if o not in SECONDARY_OBJECTIVES]
        if unknown:
            raise ValueError(f"unknown objective '{unknown[0]}': after the metric, use any of {known}")
        return v

    @field_validator("models")
    @classmethod
    def _models(cls, v: list[str]) -> list[str]:
        v = [m.strip() for m in v if m.strip()]
        if not v:
            raise ValueError("needs at least one model")
        return v

    @field_validator("host_memory")
    @classmethod
    def _host_memory(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                parse_memory(v, "host memory")
            except ConfigError as exc:
                raise ValueError(f"{exc.message}: write it like 8GB or 512MiB") from None
        return v

    @field_validator("storage_retry", mode="before")
    @classmethod
    def _storage_retry(cls, v: object) -> str:
        try:
            parse_duration(v)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{exc}") from None
        return str(v)

    @field_validator("gpus")
    @classmethod
    def _gpus(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or min(v) < 0 or len(set(v)) != len(v)):
            raise ValueError("list distinct GPU indices >= 0, e.g. 0,1")
        return v

    @model_validator(mode="after")
    def _storage_from_env(self) -> StudyConfig:
        if self.storage is None and os.environ.get("OPTUNA_STORAGE"):
            self.storage = os.environ["OPTUNA_STORAGE"]
        # an MLflow URI whose password was kept out of files and command lines comes by environment
        env_uri = os.environ.get(MLFLOW_URI_ENV)
        if env_uri and (self.mlflow_uri is None or is_redacted(self.mlflow_uri)):
            self.mlflow_uri = env_uri
        return self

    @property
    def directions(self) -> list[Literal["maximize", "minimize"]]:
        """The Optuna study's directions: the agent's metric maximised, every other objective minimised."""
        rest: list[Literal["maximize", "minimize"]] = ["minimize"] * (len(self.objectives or [None]) - 1)
        return ["maximize", *rest]

    @property
    def storage_retry_s(self) -> float:
        """``storage_retry`` in seconds."""
        return parse_duration(self.storage_retry)

    @property
    def storage_url(self) -> str:
        """Storage URL: --storage > YAML > OPTUNA_STORAGE > a SQLite file under the output dir."""
        return storage_url(self.storage, self.output_dir)

    @property
    def mlflow_tracking_uri(self) -> str:
        return mlflow_uri(self.mlflow_uri, self.output_dir)


MLFLOW_URI_ENV = "HPO_MLFLOW_URI"  # the MLflow URI for processes that must not see it on their command line


def storage_url(storage: str | None, output_dir: Path | None) -> str:
    """The Optuna storage: ``storage``, else OPTUNA_STORAGE, else ``<output_dir>/hpo.db`` (default runs/)."""
    if storage:
        return storage
    if os.environ.get("OPTUNA_STORAGE"):
        return os.environ["OPTUNA_STORAGE"]
    return f"sqlite:///{((output_dir or DEFAULT_OUTPUT_DIR) / 'hpo.db').resolve()}"


def mlflow_uri(uri: str | None, output_dir: Path | None) -> str:
    """The MLflow tracking URI: ``uri``, else ``<output_dir>/mlflow.db`` (default runs/)."""
    return uri or f"sqlite:///{((output_dir or DEFAULT_OUTPUT_DIR) / 'mlflow.db').resolve()}"


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def agent_yaml(agent: str) -> Path:
    return CONFIG_DIR / "agents" / f"{agent}.yaml"


def load_config(
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    flags: dict[str, str] | None = None,
) -> StudyConfig:
    """Build the StudyConfig: agent YAML < study YAML (--config) < CLI overrides (None values ignored).

    An invalid value names where it came from: the flag (``flags`` maps a field to its flag; default
    ``--field-name``) when it was an override, else the YAML file."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    study_yaml = read_yaml(config_file) if config_file is not None else {}
    agent = str(overrides.get("agent") or study_yaml.get("agent") or "criteria")
    if not agent_yaml(agent).is_file():  # every agent ships its YAML (hpo/agents/__init__.py)
        known = ", ".join(sorted(p.stem for p in (CONFIG_DIR / "agents").glob("*.yaml")))
        raise ConfigError(f"unknown agent '{agent}'", f"use one of: {known}")
    merged = _merge(read_yaml(agent_yaml(agent)), study_yaml)
    merged = _merge(merged, overrides)
    merged.setdefault("study", agent)
    try:
        return StudyConfig.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "config"
        top = str(err["loc"][0]) if err["loc"] else ""
        if top in overrides and not isinstance(overrides[top], dict):
            flag = (flags or {}).get(top, "--" + top.replace("_", "-"))
            raise ConfigError(
                f"invalid value for {flag}: {overrides[top]!r} ({err['msg']})",
                f"see `hpo tune --help` for {flag}",
            ) from exc
        src = f" in {config_file}" if config_file and top in study_yaml else ""
        raise ConfigError(
            f"invalid setting '{loc}'{src}: {err['msg']}", "see configs/studies/*.yaml and `hpo tune --help`"
        ) from exc
