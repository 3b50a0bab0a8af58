"""What a study needs before its first trial: validated inputs, device, memory budget, tracker, objective.

Both the serial run and each parallel worker build their objective here, so bad input fails the same way
(an HpoError naming the problem) before any trial starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
import torch

from hpo.agents import get_agent
from hpo.agents.base import Agent
from hpo.config.catalog import get_spec
from hpo.config.study import StudyConfig
from hpo.device.faults import FaultPlan
from hpo.device.gpu import (
    GpuProfile,
    detect,
    foreign_from_env,
    headroom_bytes,
    load_profile,
    resolve_device,
    usable_card_bytes,
)
from hpo.memory.calibrate import Calibration
from hpo.progress import Progress
from hpo.redact import redact
from hpo.tracking.tracker import Tracker, make_tracker
from hpo.train.data import Splits, clean_splits
from hpo.train.model import load_tokenizer
from hpo.train.optim import eight_bit_available
from hpo.trial import objectives
from hpo.trial.admission import Admission, HostAdmission, no_admission, no_host_admission
from hpo.trial.objective import Objective
from hpo.trial.sizing import MemoryPolicy, Sizer
from hpo.trial.space import SpaceContext, validate
from hpo.trial.training import EncodedData
from hpo.units import parse_memory


def memory_policy(cfg: StudyConfig, device: torch.device, profile: GpuProfile | None = None) -> MemoryPolicy:
    """The GPU budget: --gpu-memory (simulated on CPU), else the detected card, else none (plain CPU run).

    Headroom: the study's ``headroom_gb`` when set, else the GPU profile's (``hpo.device.gpu.headroom_bytes``,
    the rule ``hpo estimate`` uses too).
    """
    profile = profile or load_profile(cfg.gpu_memory)
    headroom, alloc = headroom_bytes(profile, cfg.headroom_gb), profile.allocator
    host = parse_memory(cfg.host_memory) if cfg.host_memory else None
    if cfg.gpu_memory is not None and device.type != "cuda":
        return MemoryPolicy(
            parse_memory(cfg.gpu_memory),
            headroom,
            True,
            cfg.high_memory_fraction,
            host_bytes=host,
            allocator=alloc,
        )
    if device.type == "cuda":  # the configured card (or the device), less what other processes held at start
        position = torch.cuda.current_device()
        info = detect(position)
        configured = parse_memory(cfg.gpu_memory) if cfg.gpu_memory is not None else None
        return MemoryPolicy(
            usable_card_bytes(info.total_bytes, foreign_from_env(position), configured),
            headroom,
            False,
            cfg.high_memory_fraction,
            host_bytes=host,
            allocator=alloc,
            card=info.name,
        )
    return MemoryPolicy(None, headroom, host_bytes=host, allocator=alloc)


@dataclass
class Setup:
    """A study's validated inputs: agent, data splits, device, search space, loaded tokenizers."""

    agent: Agent
    splits: Splits
    device: torch.device
    space: SpaceContext
    tokenizers: dict[str, Any]
    dropped_rows: int = 0  # dirty examples dropped (--allow-dirty-data)


def prepare(cfg: StudyConfig) -> Setup:
    """Validate everything a study needs before any trial (or worker) starts; HpoError on bad input."""
    agent = get_agent(cfg.agent, cfg)
    objectives.names(cfg, agent.metric_name)  # --objectives starts with the agent's metric
    splits, dropped = clean_splits(agent.load_splits(cfg.data_dir, cfg.seed), cfg.allow_dirty_data)
    device = resolve_device(cfg.device)
    profile = load_profile(cfg.gpu_memory) if (cfg.gpu_memory or device.type == "cuda") else None
    space = SpaceContext(
        models=tuple(cfg.models),
        space=cfg.space,
        on_cuda=device.type == "cuda",
        profile=profile,
        bf16_supported=device.type == "cuda" and torch.cuda.is_bf16_supported(),
        eight_bit=device.type == "cuda" and eight_bit_available(),
    )
    validate(space)
    tokenizers = {m: load_tokenizer(get_spec(m)) for m in cfg.models}  # fail fast on unloadable models
    agent.check_space(cfg.space, tokenizers)
    return Setup(agent, splits, device, space, tokenizers, dropped)


def tracker_for(cfg: StudyConfig, *, create: bool = True) -> Tracker:
    """The study's MLflow tracker (its parent run carries the study settings); ``create=False`` only opens
    what the study's starter set up (``hpo.run.bootstrap``)."""
    settings = {
        "agent": cfg.agent,
        "models": ",".join(cfg.models),
        "epochs": cfg.epochs,
        "patience": cfg.patience,
        "seed": cfg.seed,
        "storage": redact(cfg.storage_url),  # never the password (MLflow params are readable by all)
    }
    return make_tracker(
        cfg.mlflow,
        cfg.mlflow_tracking_uri,
        cfg.study,
        cfg.output_dir / "mlartifacts",
        settings,
        create=create,
    )


def build_objective(
    cfg: StudyConfig,
    progress: Progress,
    *,
    setup: Setup | None = None,
    tracker: Tracker | None = None,
    policy: MemoryPolicy | None = None,
    admission: Admission = no_admission,
    host_admission: HostAdmission = no_host_admission,
    on_start: Callable[[optuna.Trial], None] | None = None,
    calibration_path: Path | None = None,
) -> Objective:
    """Everything the objective needs, validated before the first trial starts.

    A worker passes its ``setup`` and ``policy`` (the other workers' contexts counted) and its ledger
    ``admission``; a serial run leaves them to their defaults.
    """
    setup = setup or prepare(cfg)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    faults = FaultPlan.from_env() or (FaultPlan.from_dict(cfg.faults) if cfg.faults else None)
    calibration = Calibration(calibration_path or cfg.output_dir / "calibration.json")
    policy = policy or memory_policy(cfg, setup.device, setup.space.profile)
    data = EncodedData(
        setup.splits,
        cfg.max_train_examples,
        cfg.padding,
        dict(setup.tokenizers),
        cfg.output_dir / "cache",
        encode=setup.agent.encode,
    )
    sizer = Sizer(
        replace(policy),
        setup.agent.num_labels,
        calibration,
        cfg.prune_by_estimate and cfg.admission == "ledger",  # --admission none: every config runs
        eval_batch_size=cfg.eval_batch_size,
        longest=data.longest,
    )
    return Objective(
        cfg=cfg,
        agent=setup.agent,
        data=data,
        tracker=tracker or tracker_for(cfg),
        progress=progress,
        device=setup.device,
        space=setup.space,
        sizer=sizer,
        faults=faults,
        admission=admission,
        host_admission=host_admission,
        on_start=on_start,
    )
