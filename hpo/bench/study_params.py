"""A fixed trial config as the Optuna parameters ``hpo.trial.space.sample`` asks for (for ``enqueue_trial``).

The space narrows a categorical per model (``batch_size:8/16`` for a large model on a 24 GB profile), so the
parameter names depend on the model's bounds; a value outside them is an error here, not a silent resample.
"""

from __future__ import annotations

from typing import Any

from hpo.config.catalog import get_spec
from hpo.config.study import StudyConfig
from hpo.device.gpu import load_profile
from hpo.trial.space import SpaceContext, model_bounds


def _name(name: str, choices: list[int], full: list[int]) -> str:
    return name if choices == full else f"{name}:{'/'.join(str(c) for c in choices)}"


def enqueue_params(cfg: StudyConfig, fields: dict[str, Any], on_cuda: bool | None = None) -> dict[str, Any]:
    """Parameters fixing ``fields`` (model, batch_size, max_length, precision, grad_checkpointing); the rest
    (learning rate, loss, ...) is sampled. ValueError for a value the study's space cannot sample."""
    on_cuda = cfg.device != "cpu" if on_cuda is None else on_cuda
    profile = load_profile(cfg.gpu_memory) if cfg.gpu_memory else None
    ctx = SpaceContext(models=tuple(cfg.models), space=cfg.space, on_cuda=on_cuda, profile=profile)
    spec = get_spec(fields["model"])
    batches, accums, lengths = model_bounds(spec, ctx)
    s = cfg.space
    params: dict[str, Any] = {"model": fields["model"]}
    for key, choices, full in (
        ("batch_size", batches, list(s.batch_size)),
        ("max_length", lengths, list(s.max_length)),
        ("grad_accum", accums, list(s.grad_accum)),
    ):
        value = fields.get(key, 1 if key == "grad_accum" else None)
        if value not in choices:
            raise ValueError(f"{fields['model']}: {key}={value} is not in the space's choices {choices}")
        params[_name(key, choices, full)] = value
    params["grad_checkpointing"] = bool(fields.get("grad_checkpointing", False))
    params["frozen_layers"] = 0
    if on_cuda:
        params["precision"] = fields.get("precision", "fp32")
    return params
