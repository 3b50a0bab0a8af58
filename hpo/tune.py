"""`hpo tune` core: build everything a study needs and run trials in this process until the target count."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from hpo.agents import get_agent
from hpo.agents.base import Agent
from hpo.config import StudyConfig
from hpo.errors import ConfigError
from hpo.faults import FaultPlan
from hpo.gpu import detect, load_profile, parse_memory
from hpo.memory.calibrate import Calibration
from hpo.memory.catalog import get_spec
from hpo.objective import Objective
from hpo.progress import Progress
from hpo.sizing import MemoryPolicy, Sizer
from hpo.space import SpaceContext, validate
from hpo.study import create_or_load, finished_count
from hpo.tracking import Tracker, make_tracker
from hpo.train.data import Splits
from hpo.train.model import load_tokenizer

GB = 1024**3
MAX_CONSECUTIVE_FAILURES = 5


@dataclass
class TuneReport:
    """What a `hpo tune` run did (printed by the CLI)."""

    study: str
    storage: str
    target: int
    finished_before: int
    counts: dict[str, int] = field(default_factory=dict)
    best_value: float | None = None
    best_trial: int | None = None
    best_params: dict[str, object] = field(default_factory=dict)
    baseline: float | None = None
    metric: str = "macro_f1"
    mlflow_uri: str | None = None
    interrupted: bool = False
    stopped_reason: str = ""
    poisoned: bool = False
    seconds: float = 0.0


def resolve_device(cfg: StudyConfig) -> torch.device:
    """auto -> cuda when available, else cpu; asking for cuda without one is a ConfigError."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda but no CUDA device is available", "use --device auto or cpu")
    if cfg.device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def memory_policy(cfg: StudyConfig, device: torch.device) -> MemoryPolicy:
    """The GPU budget: --gpu-memory (simulated on CPU), else the detected card, else none (plain CPU run)."""
    headroom = int(cfg.headroom_gb * GB)
    if cfg.gpu_memory is not None:
        return MemoryPolicy(
            parse_memory(cfg.gpu_memory), headroom, device.type != "cuda", cfg.high_memory_fraction
        )
    if device.type == "cuda":
        info = detect(torch.cuda.current_device())
        return MemoryPolicy(info.total_bytes, headroom, False, cfg.high_memory_fraction)
    return MemoryPolicy(None, headroom)


@dataclass
class Setup:
    """A study's validated inputs: agent, data splits, device, search space, loaded tokenizers."""

    agent: Agent
    splits: Splits
    device: torch.device
    space: SpaceContext
    tokenizers: dict[str, Any]


def prepare(cfg: StudyConfig) -> Setup:
    """Validate everything a study needs before any trial (or worker) starts; HpoError on bad input."""
    agent = get_agent(cfg.agent)
    splits = agent.load_splits(cfg.data_dir, cfg.seed)
    device = resolve_device(cfg)
    profile = load_profile(cfg.gpu_memory) if (cfg.gpu_memory or device.type == "cuda") else None
    space = SpaceContext(
        models=tuple(cfg.models),
        space=cfg.space,
        on_cuda=device.type == "cuda",
        profile=profile,
        bf16_supported=device.type == "cuda" and torch.cuda.is_bf16_supported(),
    )
    validate(space)
    tokenizers = {m: load_tokenizer(get_spec(m)) for m in cfg.models}  # fail fast on unloadable models
    return Setup(agent, splits, device, space, tokenizers)


def tracker_for(cfg: StudyConfig) -> Tracker:
    """The study's MLflow tracker (its parent run carries the study settings)."""
    settings = {
        "agent": cfg.agent,
        "models": ",".join(cfg.models),
        "epochs": cfg.epochs,
        "patience": cfg.patience,
        "seed": cfg.seed,
        "storage": cfg.storage_url,
    }
    return make_tracker(
        cfg.mlflow, cfg.mlflow_tracking_uri, cfg.study, cfg.output_dir / "mlartifacts", settings
    )


def build_objective(cfg: StudyConfig, progress: Progress, calibration_path: Path | None = None) -> Objective:
    """Everything the objective needs, validated before the first trial starts."""
    setup = prepare(cfg)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    faults = FaultPlan.from_env() or (FaultPlan.from_dict(cfg.faults) if cfg.faults else None)
    calibration = Calibration(calibration_path or cfg.output_dir / "calibration.json")
    return Objective(
        cfg=cfg,
        agent=setup.agent,
        splits=setup.splits,
        tracker=tracker_for(cfg),
        progress=progress,
        device=setup.device,
        space=setup.space,
        sizer=Sizer(
            memory_policy(cfg, setup.device), setup.agent.num_labels, calibration, cfg.prune_by_estimate
        ),
        faults=faults,
        tokenizers=setup.tokenizers,
    )


def count_states(study: optuna.Study) -> dict[str, int]:
    """Trials by outcome, pruned ones split by reason."""
    counts = {
        "complete": 0,
        "pruned_memory_estimate": 0,
        "pruned_oom": 0,
        "pruned_early_stop": 0,
        "fail": 0,
        "running": 0,
    }
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.COMPLETE:
            counts["complete"] += 1
        elif t.state == TrialState.PRUNED:
            key = f"pruned_{t.user_attrs.get('pruned_reason', 'early_stop')}"
            counts[key] = counts.get(key, 0) + 1
        elif t.state == TrialState.FAIL:
            counts["fail"] += 1
        elif t.state == TrialState.RUNNING:
            counts["running"] += 1
    return counts


def run_one(study: optuna.Study, objective: Objective) -> optuna.trial.FrozenTrial:
    """Run one trial (errors become FAIL trials) and report how it ended."""
    study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=True)
    last = study._storage.get_trial(objective.last_trial_id)  # this process's trial (others may run too)
    note = last.user_attrs.get("pruned_reason") or last.user_attrs.get("error") or ""
    objective.progress.trial_finished(last.number, last.state.name.lower(), last.value, str(note))
    return last


def run_trials(study: optuna.Study, objective: Objective, target: int, timeout: float | None) -> str:
    """Run trials one at a time until ``target`` finished trials; returns why it stopped."""
    start, failures = time.monotonic(), 0
    while finished_count(study) < target:
        if timeout is not None and time.monotonic() - start >= timeout:
            return "timeout"
        last = run_one(study, objective)
        if objective.poisoned:
            return "fatal CUDA error: this process stopped (a launcher replaces it)"
        failures = failures + 1 if last.state == TrialState.FAIL else 0
        if failures >= MAX_CONSECUTIVE_FAILURES:
            err = last.user_attrs.get("error", "see the log")
            return f"stopped after {failures} consecutive failed trials (last: {err})"
    return "target reached"


def run_tune(cfg: StudyConfig, progress: Progress | None = None) -> TuneReport:
    """Create or resume the study and run trials in this process."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = time.monotonic()
    if cfg.par > 1:
        return run_parallel(cfg, started)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C even when started in the background
    progress = progress or Progress(total=cfg.n_trials)
    objective = build_objective(cfg, progress)
    study = create_or_load(cfg)
    report = TuneReport(
        study=cfg.study,
        storage=cfg.storage_url,
        target=cfg.n_trials,
        finished_before=finished_count(study),
        mlflow_uri=cfg.mlflow_tracking_uri if cfg.mlflow else None,
    )
    try:
        report.stopped_reason = run_trials(study, objective, cfg.n_trials, cfg.timeout)
    except KeyboardInterrupt:
        report.interrupted = True
        report.stopped_reason = "interrupted: finished trials are kept; rerun the same command to resume"
    finally:
        progress.close()
    report.poisoned = objective.poisoned
    report.baseline = objective.agent.majority_baseline(objective.splits, "val")
    report.metric = objective.agent.metric_name
    _finish(report, study, objective.tracker)
    report.seconds = time.monotonic() - started
    return report


def _finish(report: TuneReport, study: optuna.Study, tracker: Tracker) -> None:
    """Fill the outcome counts and the best trial; log the best on the study's MLflow parent run."""
    report.counts = count_states(study)
    try:
        best = study.best_trial
        report.best_value, report.best_trial, report.best_params = best.value, best.number, dict(best.params)
    except ValueError:
        pass
    end_study = getattr(tracker, "end_study", None)
    if end_study is not None:
        end_study(
            None
            if report.best_value is None
            else {
                f"best_val_{report.metric}": report.best_value,
                "best_trial": report.best_trial,
                f"majority_baseline_{report.metric}": report.baseline,
            }
        )


def run_parallel(cfg: StudyConfig, started: float) -> TuneReport:
    """`hpo tune --par N`: N supervised worker processes (see hpo.launcher)."""
    from hpo.launcher import Launcher

    setup = prepare(cfg)  # fail here, not once per worker
    study = create_or_load(cfg)
    before = finished_count(study)
    launch = Launcher(cfg, cfg.par, recycle_after=cfg.recycle_after).run()
    report = TuneReport(
        study=cfg.study,
        storage=cfg.storage_url,
        target=cfg.n_trials,
        finished_before=before,
        mlflow_uri=cfg.mlflow_tracking_uri if cfg.mlflow else None,
        interrupted=launch.interrupted,
        metric=setup.agent.metric_name,
        baseline=setup.agent.majority_baseline(setup.splits, "val"),
    )
    report.stopped_reason = (
        "interrupted: finished trials are kept; rerun to resume"
        if launch.interrupted
        else f"target reached ({launch.started} workers started, {launch.recycled} "
        f"recycled, {launch.crashed} replaced after a crash)"
    )
    _finish(report, study, tracker_for(cfg))
    report.seconds = time.monotonic() - started
    return report
