"""A multi-objective study's values (``--objectives macro_f1,peak_memory``): the agent's metric first
(maximised), then any of peak_memory (GB), train_time (s), latency (ms per example), each minimised.

- peak_memory: the measured device-level peak (reserved + CUDA context, or NVML when larger) where it was
  measured, else the trial's estimate (CPU runs, simulated cards);
- train_time: the wall time of the attempt that trained to the end (not its admission wait nor OOM retries);
- latency: forward passes over the validation split at a fixed batch (``LATENCY_BATCH``) after training,
  milliseconds per example.

Optuna does not support ``trial.report``/``should_prune`` in a multi-objective study: per-epoch pruning is
off there (trials still stop early by ``--patience``); OOM and estimate pruning (TrialPruned) still work.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from hpo.config.study import SECONDARY_OBJECTIVES, StudyConfig
from hpo.errors import ConfigError
from hpo.train.batching import SEQUENCE_KEYS
from hpo.trial import keys as K
from hpo.trial.context import TrialContext
from hpo.units import GIB

LATENCY_BATCH = 16  # examples per forward pass for the latency objective: the same for every trial
LATENCY_EXAMPLES = 256  # at most this many validation examples are timed


def names(cfg: StudyConfig, metric: str) -> list[str]:
    """The study's objectives: ``--objectives`` (the first checked against the agent's metric), else the
    metric alone."""
    if not cfg.objectives:
        return [metric]
    if cfg.objectives[0] != metric:
        raise ConfigError(
            f"invalid value for --objectives: the first objective must be agent '{cfg.agent}''s metric "
            f"'{metric}', not '{cfg.objectives[0]}'",
            f"write --objectives {metric},{','.join(cfg.objectives[1:]) or 'peak_memory'}",
        )
    return list(cfg.objectives)


def multi(cfg: StudyConfig) -> bool:
    """Whether the study has several objectives (no per-epoch pruning: Optuna refuses ``trial.report``)."""
    return bool(cfg.objectives) and len(cfg.objectives or ()) > 1


def values(
    cfg: StudyConfig, ctx: TrialContext, metric_value: float, measured: dict[str, Any]
) -> dict[str, float]:
    """Objective name -> value of a completed trial, in ``cfg.objectives`` order."""
    out = {cfg.objectives[0] if cfg.objectives else "metric": float(metric_value)}
    for name in (cfg.objectives or [])[1:]:
        if name == "peak_memory":
            peak = measured.get(K.MEASURED_DEVICE_GB)
            out[name] = float(peak) if peak is not None else ctx.budget.device_total_bytes / GIB
        elif name == "train_time":
            out[name] = float(ctx.train_time_s or 0.0)
        elif name == "latency":
            out[name] = float(ctx.latency_ms if ctx.latency_ms is not None else float("nan"))
        else:  # StudyConfig validated the names
            raise AssertionError(f"unknown objective {name!r}; known: {', '.join(SECONDARY_OBJECTIVES)}")
    return out


def as_attrs(objective_values: dict[str, float]) -> dict[str, float]:
    """The values as trial user attrs / MLflow metrics (``objective_<name>``)."""
    return {K.objective_key(name): value for name, value in objective_values.items()}


@torch.no_grad()
def latency_ms(
    model: nn.Module, val: dict[str, torch.Tensor], device: torch.device, inputs: tuple[str, ...]
) -> float:
    """Milliseconds per example of forward passes over (up to ``LATENCY_EXAMPLES``) validation rows at
    ``LATENCY_BATCH``, after one warm-up batch; ``inputs``: the encoded keys the model takes."""
    model.eval()
    n = min(LATENCY_EXAMPLES, int(val["input_ids"].shape[0]))
    if n == 0:
        return float("nan")
    batches = []
    for start in range(0, n, LATENCY_BATCH):
        batch = {k: val[k][start : min(n, start + LATENCY_BATCH)] for k in inputs if k in val}
        width = int(batch["attention_mask"].sum(dim=1).max()) if "attention_mask" in batch else None
        batches.append(
            {k: (t[:, :width] if width and k in SEQUENCE_KEYS else t).to(device) for k, t in batch.items()}
        )
    model(**batches[0])  # warm-up: kernels, allocator
    _sync(device)
    began = time.perf_counter()
    for batch in batches:
        model(**batch)
    _sync(device)
    return (time.perf_counter() - began) * 1000.0 / n


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
