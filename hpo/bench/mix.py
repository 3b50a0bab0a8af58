"""The trial mix of the scheduler benchmark: what `hpo tune` samples on a CUDA card, sized and timed.

Configs are drawn by ``hpo.trial.space.sample`` (random sampler, seeded) from a study's search space and
models within the GPU profile's bounds (default ``configs/studies/criteria-24gb.yaml``: base and large
encoders); footprints are the memory estimator's device totals (``hpo.memory.estimate``, what a worker
reserves); durations come from a compute cost model with noise. A config that does not fit beside the other
workers' CUDA contexts is pruned by estimate before it costs GPU time, as in the tool, and replaced by the
next draw (``Mix.pruned`` counts them).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo.config.study import TrialConfig

PEAK_FLOPS = {"fp32": 20e12, "fp16": 55e12, "bf16": 55e12, "bf16_pure": 55e12}  # sustained, 24 GB class
TRAIN_EXAMPLES, STARTUP_S, SATURATION_TOKENS = 8000, 45.0, 4096


Footprint = Callable[[TrialConfig], int]  # device-level peak bytes (CUDA context included)
Draw = Callable[[], TrialConfig]  # the next sampled config
Error = Callable[[random.Random], float]  # true footprint / estimate of one trial


@dataclass(frozen=True)
class Form:
    """One way to run a trial: its estimated peak device footprint, standalone duration and GPU utilisation;
    the footprint it really has (estimate x the estimator's error) and when it reaches it."""

    footprint: int
    duration_s: float
    util: float  # fraction of the GPU's compute the trial keeps busy when it runs alone
    true_footprint: int = 0  # 0: exactly the estimate
    peak_at_s: float = 0.0  # when the peak is first reached (the first epoch's end: optimizer step, eval)

    @property
    def real(self) -> int:
        return self.true_footprint or self.footprint


@dataclass(frozen=True)
class TrialSpec:
    """One trial of the mix: its sampled configuration and forms (as sampled, then hpo.trial.elastic's)."""

    index: int
    config: TrialConfig
    forms: tuple[Form, ...]

    @property
    def footprint(self) -> int:
        return self.forms[0].footprint

    @property
    def duration_s(self) -> float:
        return self.forms[0].duration_s

    @property
    def util(self) -> float:
        return self.forms[0].util


def estimator_footprint(cfg: TrialConfig) -> int:
    """Device-level peak from hpo.memory.estimate (what a worker's trial needs, its CUDA context included)."""
    from hpo.config.catalog import get_spec
    from hpo.memory.estimate import estimate
    from hpo.trial.sizing import memory_request

    return int(estimate(get_spec(cfg.model), memory_request(cfg, 2)).device_total_bytes)


def space_draw(
    config: Path | None,
    seed: int,
    gpu_memory: str = "24GB",
    models: Sequence[str] | None = None,
    precisions: Sequence[str] | None = None,
) -> Draw:
    """Configs as `hpo tune` samples them on a CUDA card of ``gpu_memory``: hpo.trial.space.sample over
    the study's space and models (``config``, else the criteria agent's defaults), optionally overridden,
    seeded."""
    import optuna

    from hpo.config.study import load_config
    from hpo.device.gpu import load_profile
    from hpo.trial.space import SpaceContext, sample

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    overrides: dict[str, Any] = {} if config else {"agent": "criteria"}
    if models:
        overrides["models"] = list(models)
    cfg = load_config(config, overrides)
    space = cfg.space.model_copy(update={"precision": list(precisions)}) if precisions else cfg.space
    ctx = SpaceContext(tuple(cfg.models), space, on_cuda=True, profile=load_profile(gpu_memory))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))

    def draw() -> TrialConfig:
        trial = study.ask()
        cfg = sample(trial, ctx)
        study.tell(trial, 0.0)
        return cfg

    return draw


def duration_and_util(cfg: TrialConfig, epochs: int, noise: float) -> tuple[float, float]:
    """Cost model: (2 + 4 x trainable share) x params + attention FLOPs per token, x tokens x epochs, at a
    micro-batch-dependent utilisation; checkpointing recomputes the forward pass; x ``noise``."""
    from hpo.config.catalog import get_spec

    spec = get_spec(cfg.model)
    trainable = 1.0 - min(cfg.frozen_layers, spec.num_layers) / max(1, spec.num_layers)
    length = cfg.max_length
    flops_per_token = (2 + 4 * trainable) * spec.params + 12 * spec.num_layers * spec.hidden_size * length
    ckpt = 4 / 3 if cfg.grad_checkpointing else 1.0
    flops = flops_per_token * TRAIN_EXAMPLES * length * epochs * ckpt
    util = cfg.batch_size * length / (cfg.batch_size * length + SATURATION_TOKENS)
    seconds = STARTUP_S + flops / (PEAK_FLOPS.get(cfg.precision, PEAK_FLOPS["fp32"]) * util)
    return seconds * noise, util


def _form(cfg: TrialConfig, size: int, epochs: int, noise: float, ratio: float) -> Form:
    """A form of ``size`` estimated bytes whose true footprint is ``ratio`` times that, peaking at the end of
    its first epoch."""
    seconds, util = duration_and_util(cfg, epochs, noise)
    return Form(size, seconds, util, int(size * ratio), STARTUP_S + (seconds - STARTUP_S) / epochs)


class Mix:
    """The seeded trial mix every schedule runs, in the same order (``mix[k]`` is trial k, drawn lazily).

    A config whose footprint is over ``limit`` cannot run: hpo prunes it by estimate (no GPU time) and the
    next one is drawn; ``unfit_before[k]`` counts those drawn just before trial k (the old tool, which has
    no estimator, runs them: see ``hpo.bench.simulate.simulate``), ``pruned`` all of them. Each trial also
    carries its lighter equivalent forms (hpo.trial.elastic), cheapest first, with the same epochs and noise.
    """

    def __init__(
        self, seed: int, footprint: Footprint, limit: int, draw: Draw, error: Error | None = None
    ) -> None:
        self.rng, self.footprint, self.limit, self.draw = random.Random(seed), footprint, limit, draw
        self.error = error  # None: every footprint is exactly its estimate
        self.error_rng = random.Random(seed + 7919)  # its own stream: the mix is the same under any error
        self.trials: list[TrialSpec] = []
        self.unfit_before: list[int] = []
        self.pruned = 0

    def __getitem__(self, k: int) -> TrialSpec:
        from hpo.trial.elastic import lighter_forms

        unfit = 0
        while len(self.trials) <= k:
            cfg = self.draw()
            nbytes = self.footprint(cfg)
            if nbytes > self.limit:
                self.pruned, unfit = self.pruned + 1, unfit + 1
                continue
            self.unfit_before.append(unfit)
            unfit = 0
            rng = self.rng
            epochs = rng.randint(2, 5) if rng.random() < 0.5 else rng.randint(6, 20)  # pruned / early stop
            noise = math.exp(rng.gauss(0.0, 0.2))
            ratio = self.error(self.error_rng) if self.error is not None else 1.0  # per trial, every form

            forms = [_form(cfg, nbytes, epochs, noise, ratio)]
            for light in lighter_forms(cfg):
                size = self.footprint(light)
                if size < nbytes:  # as the worker does: only forms that need less memory
                    forms.append(_form(light, size, epochs, noise, ratio))
            self.trials.append(TrialSpec(len(self.trials), cfg, tuple(forms)))
        return self.trials[k]

    def trials_upto(self, n: int) -> list[TrialSpec]:
        """Trials 0..n-1 (drawn if needed)."""
        return [self[k] for k in range(n)]
