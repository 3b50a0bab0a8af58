"""Study creation and loading: storage URL, sampler, pruner, resume (same name = same study)."""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from hpo.config.study import StudyConfig
from hpo.errors import StorageError
from hpo.redact import redact, redact_text
from hpo.storage.dbcheck import check_sqlite, is_disk_full, sqlite_path
from hpo.storage.rdb import check_driver, heartbeat_settings, is_server_url, server_storage
from hpo.storage.retry import open_rdb

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
AGENT_ATTR = "agent"  # study user attrs written when the study is created
CONFIG_ATTR = "config"  # the StudyConfig (JSON) that `hpo worker` and `hpo best --evaluate` read back
BASELINE_ATTR = "baseline"  # {metric, name, value}: the agent's trivial prediction on val (`hpo report`)
HEARTBEAT_INTERVAL_S = 20
HEARTBEAT_GRACE_S = 60


class _NoDiskFullTraceback(logging.Filter):
    """Optuna logs a failed trial with its traceback; a full disk ends the run with one error line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and is_disk_full(record.exc_info[1]):
            record.exc_info, record.exc_text = None, None
        return True


_OPTIMIZE_LOG = logging.getLogger("optuna.study._optimize")  # where Optuna reports a failed trial


def _quiet() -> None:
    verbose = os.environ.get("HPO_VERBOSE", "") not in ("", "0")  # `--verbose` (hpo.tracking.quiet)
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if not any(isinstance(f, _NoDiskFullTraceback) for f in _OPTIMIZE_LOG.filters):
        _OPTIMIZE_LOG.addFilter(_NoDiskFullTraceback())


def make_storage(url: str, *, heartbeat: bool = True) -> optuna.storages.BaseStorage:
    """An RDB storage (SQLite with a busy timeout, PostgreSQL, MySQL) or a journal file (``journal:PATH``).

    Heartbeats let a restarted run (or the launcher) fail trials whose process died, so they are retried.
    """
    _quiet()
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    kwargs: dict[str, Any] = {}
    if heartbeat or is_server_url(url):  # a server storage is shared by the whole process: heartbeats on
        from optuna.storages import RetryHeartbeatStaleTrialCallback

        interval, grace = heartbeat_settings(HEARTBEAT_INTERVAL_S, HEARTBEAT_GRACE_S)
        kwargs = {
            "heartbeat_interval": interval,
            "grace_period": grace,
            "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=1),
        }
    try:
        check_driver(url)  # an unknown dialect or a missing driver is named, not a generic open failure
        if is_server_url(url):
            return server_storage(url, kwargs)  # one per process, bounded pool (hpo.storage.rdb)
        engine_kwargs: dict[str, Any] = {}
        if url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            if not path.parent.is_dir():
                raise StorageError(
                    f"storage directory {path.parent} does not exist", "create it or pass another --storage"
                )
            engine_kwargs = {"connect_args": {"timeout": 120}}
        return open_rdb(url, engine_kwargs=engine_kwargs, **kwargs)  # waits out outages (hpo.storage.retry)
    except StorageError:
        raise
    except ImportError as exc:
        raise StorageError(
            f"no database driver for storage {redact(url)}: {str(exc).splitlines()[0][:200]}",
            "PostgreSQL needs psycopg (installed with hpo: postgresql://...), MySQL PyMySQL "
            "(mysql+pymysql://...)",
        ) from exc
    except Exception as exc:  # sqlalchemy raises many types for a bad URL / dead server
        raise StorageError(
            f"cannot open storage {redact(url)}: {redact_text(str(exc).splitlines()[0][:200], url)}",
            "check --storage / OPTUNA_STORAGE (e.g. sqlite:///runs/hpo.db)",
        ) from exc


def make_sampler(cfg: StudyConfig, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """Seeded TPE (``seed``, default the study's): multivariate, grouped, constant liar (parallel workers).

    TPE also serves multi-objective studies (--objectives): it learns from a few trials, where NSGA-II needs
    generations of a population (50 by default) before its proposals improve on random ones."""
    s = cfg.sampler
    return optuna.samplers.TPESampler(
        seed=cfg.seed if seed is None else seed,
        n_startup_trials=s.n_startup_trials,
        multivariate=s.multivariate,
        group=s.group,
        constant_liar=s.constant_liar,
    )


def make_pruner(cfg: StudyConfig) -> optuna.pruners.BasePruner:
    """Hyperband over epochs, wrapped in a PatientPruner."""
    p = cfg.pruner
    hyperband = optuna.pruners.HyperbandPruner(
        min_resource=p.min_resource, max_resource=cfg.epochs, reduction_factor=p.reduction_factor
    )
    return optuna.pruners.PatientPruner(hyperband, patience=p.patience, min_delta=p.min_delta)


def create_or_load(cfg: StudyConfig) -> optuna.Study:
    """Create the study, or resume it when one with this name exists in the storage."""
    if cfg.storage is None:
        cfg.output_dir.mkdir(parents=True, exist_ok=True)
    storage = make_storage(cfg.storage_url)
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=cfg.study,
            directions=cfg.directions,  # --objectives
            sampler=make_sampler(cfg),
            pruner=make_pruner(cfg),
            load_if_exists=True,
        )
    except Exception as exc:
        raise StorageError(
            f"cannot create or load study '{cfg.study}' in {redact(cfg.storage_url)}: "
            f"{redact_text(str(exc).splitlines()[0][:200], cfg.storage_url)}",
            "check --storage and --study",
        ) from exc
    agent = study.user_attrs.get(AGENT_ATTR)
    if agent is not None and agent != cfg.agent:
        raise StorageError(
            f"study '{cfg.study}' belongs to agent '{agent}', not '{cfg.agent}'",
            "pass another --study name or the matching --agent",
        )
    if agent is None:
        study.set_user_attr(AGENT_ATTR, cfg.agent)
        study.set_user_attr(CONFIG_ATTR, public_config(cfg))
    optuna.storages.fail_stale_trials(study)
    return study


def public_config(cfg: StudyConfig) -> dict[str, Any]:
    """``cfg`` as stored with the study and in the workers' config file: URLs without their passwords (the
    storage URL is never stored: a reader already has it; a password-bearing MLflow URI comes by --mlflow-uri
    or HPO_MLFLOW_URI)."""
    data = cfg.model_dump(mode="json")
    data["storage"] = None
    if data.get("mlflow_uri"):
        data["mlflow_uri"] = redact(data["mlflow_uri"])
    return data


def open_study(cfg: StudyConfig) -> optuna.Study:
    """A worker's handle on a study its starter created (heartbeats on; creates nothing)."""
    load_existing(cfg.study, cfg.storage_url)  # one error line when it is missing
    return optuna.load_study(
        study_name=cfg.study,
        storage=make_storage(cfg.storage_url),
        sampler=make_sampler(cfg),
        pruner=make_pruner(cfg),
    )


def derive_seed(seed: int, *parts: int) -> int:
    """A sampler seed for one stream of proposals: ``seed`` itself when every part is 0, else a stable hash.

    Samplers that share a seed (and a history) propose the same configs; Optuna reseeds the copies of its
    own threads (``BaseSampler.reseed_rng``) for that reason, from OS entropy. Deriving the seed from the
    study seed and what tells the streams apart keeps each one distinct and reproducible.
    """
    if not any(parts):
        return seed
    digest = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def seed_sampler(study: optuna.Study, cfg: StudyConfig, *stream: int) -> int:
    """Give ``study`` a sampler of its own for this process; returns the seed.

    The seed depends on the study seed, ``stream`` (a worker's slot and generation) and the number of
    trials already in the study, so neither a second worker, a replaced one nor a resumed run replays an
    earlier sequence of proposals.
    """
    seed = derive_seed(cfg.seed, *stream, len(study.get_trials(deepcopy=False)))
    study.sampler = make_sampler(cfg, seed)
    return seed


MISSING_STORAGE_FIX = (
    "pass the --output-dir (or --storage) that `hpo tune` used; `hpo studies --output-dir DIR` lists the "
    "studies a folder holds"
)


def storage_file(storage_url: str) -> Path | None:
    """The file behind a SQLite or journal storage URL (None for a server or an in-memory database)."""
    if storage_url.startswith("journal:"):
        return Path(storage_url.removeprefix("journal:"))
    return sqlite_path(storage_url)


def open_existing(storage_url: str) -> optuna.storages.BaseStorage:
    """The storage `hpo tune` made, for commands that only read it (and workers): a missing SQLite or journal
    file is an error naming it, never created here (opening one would create an empty database)."""
    path = storage_file(storage_url)
    if path is not None and not path.is_file():
        raise StorageError(f"no Optuna storage at {path.resolve()}", MISSING_STORAGE_FIX)
    if path is not None and sqlite_path(storage_url) is not None:
        check_sqlite(path, "Optuna storage")
    return make_storage(storage_url, heartbeat=False)


def load_existing(name: str, storage_url: str) -> optuna.Study:
    """Load a study that must already exist (for `hpo trials`, `hpo best`, `hpo oom`, workers)."""
    storage = open_existing(storage_url)
    try:
        names = optuna.get_all_study_names(storage=storage)
    except Exception as exc:
        raise StorageError(
            f"cannot read storage {redact(storage_url)}: "
            f"{redact_text(str(exc).splitlines()[0][:200], storage_url)}",
            "check --storage / OPTUNA_STORAGE",
        ) from exc
    if name not in names:
        known = ", ".join(names) or "none"
        raise StorageError(
            f"no study named '{name}' in {redact(storage_url)} (studies: {known})",
            "pass --study NAME and the --storage/--output-dir used by `hpo tune`",
        )
    return optuna.load_study(study_name=name, storage=storage)


def finished_count(study: optuna.Study) -> int:
    """Trials that count towards --n-trials: complete + pruned."""
    return len(study.get_trials(deepcopy=False, states=FINISHED_STATES))


# ---- trials by number -------------------------------------------------------------------------------------
# Optuna's public API has no accessor for a study's storage and addresses trials in storage by an internal id.
# hpo's processes name trials by number (unique per study) and go through these helpers, the one place that
# reads ``Study._storage``; the storage methods themselves are public (BaseStorage).


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage ``study`` reads and writes (``Study._storage``: no public accessor exists)."""
    return study._storage


def _trial_id(study: optuna.Study, number: int) -> int:
    storage = storage_of(study)
    return storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), number
    )


def trial_by_number(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    """The current state of trial ``number``, read from storage (other processes may have changed it)."""
    return storage_of(study).get_trial(_trial_id(study, number))


def fail_trial(
    study: optuna.Study, number: int, error: str, attrs: dict[str, Any] | None = None
) -> optuna.trial.FrozenTrial | None:
    """Mark trial ``number`` FAIL with user attr ``error`` (and ``attrs``) if it is still RUNNING; returns it,
    or None when it had already finished."""
    storage, trial_id = storage_of(study), _trial_id(study, number)
    if storage.get_trial(trial_id).state != TrialState.RUNNING:
        return None
    try:
        for key, value in (attrs or {}).items():
            storage.set_trial_user_attr(trial_id, key, value)
        storage.set_trial_user_attr(trial_id, "error", error)
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:  # it finished in between
        return None
    return storage.get_trial(trial_id)
