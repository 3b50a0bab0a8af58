"""`hpo estimate`: the budget of one configuration as a table or JSON, and the largest batch that fits."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from hpo.config.catalog import ModelSpec, get_spec
from hpo.device.gpu import headroom_bytes, load_profile
from hpo.memory.budget import COMPONENTS, Budget, MemoryRequest, fits
from hpo.memory.calibrate import Calibration, calibration_key
from hpo.memory.estimate import budget, max_batch_size
from hpo.memory.phases import with_evaluation
from hpo.units import GIB

_LABELS = {
    "weights": "weights",
    "adapters": "adapters (LoRA)",
    "gradients": "gradients",
    "optimizer": "optimizer states",
    "activations": "activations",
    "temporaries": "temporaries",
    "cuda_context": "CUDA context",
    "allocator_overhead": "allocator overhead",
}


_PHASE_LABELS = {"train": "training step", "optimizer_step": "optimizer step", "eval": "evaluation"}


def budget_json(b: Budget) -> dict[str, Any]:
    """The budget as JSON-ready numbers (GiB); phases: tensors + allocator overhead (device total = their max
    + the CUDA context)."""
    return {
        "components": {k: round(b.gb(k), 4) for k in COMPONENTS},
        "phases": {k: round(v / GIB, 4) for k, v in b.phases.items()},
        "total_gb": round(b.total_gb, 4),
        "device_total_gb": round(b.device_total_gb, 4),
        "method": b.method,
        "calibration_factor": round(b.factor, 4),
    }


def phase_lines(b: Budget, req: MemoryRequest) -> list[str]:
    """One line per phase, the largest marked."""
    top = max(b.phases, key=lambda ph: b.phases[ph]) if b.phases else ""
    lines = [f"{'phase (+ allocator)':<22}{'GiB':>10}", "-" * 32]
    for ph, nbytes in b.phases.items():
        label = _PHASE_LABELS.get(ph, ph) + (f" (batch {req.eval_batch_size})" if ph == "eval" else "")
        lines.append(f"{label:<22}{nbytes / GIB:>10.3f}" + ("   <- peak" if ph == top else ""))
    return lines


def _table(
    model: str,
    spec: ModelSpec,
    req: MemoryRequest,
    b: Budget,
    gpu_name: str,
    gpu_bytes: int,
    headroom: int,
    ok: bool,
    margin: int,
) -> list[str]:
    flags = [
        f"batch {req.batch_size}",
        f"length {req.max_length}",
        req.precision,
        req.optimizer,
        req.mode,
        f"attn {req.attn_impl}",
    ]
    flags += ["grad checkpointing"] * req.grad_checkpointing + [f"LoRA r={req.lora_r}"] * (req.lora_r > 0)
    lora = f"{'/'.join(req.lora_targets)}" + (f", dropout {req.lora_dropout:g}" if req.lora_dropout else "")
    flags += [f"LoRA on {lora}"] * (req.lora_r > 0) + [f"{req.head} head"] * (req.head != "classifier")
    flags += [f"{req.quant} base"] * (req.quant is not None)
    flags += [f"{req.frozen_layers} frozen layers"] * (req.frozen_layers > 0)
    lines = [
        f"{model} ({spec.params / 1e6:,.0f}M params, {spec.family}): {', '.join(flags)}",
        f"method: {b.method}",
        "",
        f"{'component':<22}{'GiB':>10}",
        "-" * 32,
    ]
    lines += [f"{_LABELS[k]:<22}{b.gb(k):>10.3f}" for k in COMPONENTS]
    lines += [
        "-" * 32,
        f"{'tensor peak':<22}{b.total_gb:>10.3f}   (torch.cuda.max_memory_allocated)",
        f"{'device total':<22}{b.device_total_gb:>10.3f}   (nvidia-smi: largest phase + CUDA context)",
        "",
        *phase_lines(b, req),
        "",
    ]
    if b.factor != 1.0:
        lines += [f"calibrated: x{b.factor:.3f} from measured peaks of this model on this card", ""]
    verdict = "fits" if ok else "does NOT fit"
    lines.append(
        f"GPU {gpu_name}: {gpu_bytes / GIB:g} GiB, headroom {headroom / GIB:g} GiB -> {verdict} "
        f"(margin {margin / GIB:+.2f} GiB)"
    )
    return lines


def run_estimate(
    model: str,
    req: MemoryRequest,
    gpu_memory: str | None,
    method: str,
    as_json: bool,
    max_batch: bool,
    headroom_gb: float | None,
    eval_batch_size: int = 0,
    calibration: Calibration | None = None,
    card: str = "",
) -> tuple[str, bool]:
    """Text for `hpo estimate`: a budget table (or one JSON object), fit verdict, optionally max batch; and
    whether the configuration fits (the command's exit code).

    ``eval_batch_size``: the study's evaluation batch; the trial's is chosen within the training peak
    (hpo.memory.phases). ``calibration``: the correction real measurements on ``card`` (its NVML name) imply,
    shown when it applies.
    """
    spec = get_spec(model)
    profile = load_profile(gpu_memory)
    alloc = profile.allocator
    headroom = headroom_bytes(profile, headroom_gb)
    req = with_evaluation(spec, req, eval_batch_size, alloc)
    b = budget(spec, req, method, alloc)
    if calibration is not None:
        b = calibration.correct(calibration_key(spec.name, card, profile.memory_bytes, req), b)
    ok, margin = fits(b, profile.memory_bytes, headroom)
    best = max_batch_size(spec, req, profile.memory_bytes, headroom, method, alloc) if max_batch else None
    if as_json:
        req_json = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(req).items()}
        out = {
            "model": model,
            "params": spec.params,
            "family": spec.family,
            "request": req_json,
            **budget_json(b),
            "gpu": profile.name,
            "gpu_memory_gb": round(profile.memory_bytes / GIB, 3),
            "headroom_gb": round(headroom / GIB, 3),
            "fits": ok,
            "margin_gb": round(margin / GIB, 4),
            "bounds": asdict(profile.bounds(spec.params)),
        }
        if best is not None:
            out["max_batch_size"] = best
        return json.dumps(out, indent=2), ok
    lines = _table(model, spec, req, b, profile.name, profile.memory_bytes, headroom, ok, margin)
    if best is not None:
        lines.append(f"largest batch size that fits: {best}" if best else "even batch size 1 does not fit")
    return "\n".join(lines), ok
