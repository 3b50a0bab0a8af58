"""Benchmark the memory estimator: analytic vs meta-device trace on CPU, and vs measured peaks on CUDA.

    python scripts/bench_estimator.py [--out results.json|results.csv] [--quick] [--models a,b]
    python scripts/bench_estimator.py --gpu-check [--out runs/gpu-check.csv] [--calibration FILE]
    python scripts/bench_estimator.py --gpu-check --grid lora [--out runs/gpu-check-lora.csv]

On CPU it compares ``estimate()`` with ``trace_estimate()`` over a grid (models x batch x length x precision
x gradient checkpointing) and prints the table, the median / max relative error of analytic vs trace and the
time of one ``estimate()`` call. With CUDA it also runs 2 real optimizer steps (2 micro-steps each) per
configuration, then one evaluation batch after returning the cached blocks as the trainer does, and compares
with ``torch.cuda.max_memory_allocated`` (tensor peak) and the device peak (NVML process memory, else
max_memory_reserved + CUDA context). ``--grid lora`` measures Llama-2-7B (weights from its config) with
peft LoRA adapters. Goal on a GPU: median |error| <= 5% on the device peak and never under by more than 5%.
Rows measured on an H200 are kept in tests/data/gpu/ and checked by tests/unit/test_gpu_measured.py.
"""

from __future__ import annotations

import argparse
import csv
import gc
import importlib.util
import itertools
import json
import statistics
import sys
import time
import timeit
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hpo.config.catalog import ModelSpec, get_spec
from hpo.device.gpu import process_memory_bytes
from hpo.memory.budget import CUDA_CONTEXT, MemoryRequest
from hpo.memory.estimate import estimate
from hpo.memory.meta_optim import make_optimizer
from hpo.memory.phases import with_evaluation
from hpo.memory.trace import trace_estimate
from hpo.memory.trace_model import model_from_config
from hpo.units import GIB

MODELS = ("hpo-tiny-bert", "bert-base-uncased", "bert-large-uncased")
BATCHES, LENGTHS = (8, 32), (128, 512)
PRECISIONS, CHECKPOINTING = ("fp32", "fp16", "bf16_pure"), (False, True)
# decoder LoRA grid (--grid lora): bf16 base weights, adapters on q/v, rank 16, as LoRA guides train 7B models
LORA_MODELS, LORA_R = ("Llama-2-7B",), 16
LORA_CONFIGS = [(b, s, "bf16_pure", c) for b in (1, 4) for s in (512, 2048) for c in (False, True)] + [
    (4, 512, "bf16", False),
    (4, 512, "bf16", True),
]


def measure_cuda(spec: ModelSpec, req: MemoryRequest) -> dict[str, Any]:
    """Real peaks on the GPU in GiB: 2 optimizer steps (train), then, with ``req.eval_batch_size``, one
    no_grad evaluation batch with the optimizer state resident (eval); allocated, reserved and device
    (NVML process memory, else reserved + context) per phase, and the overall tensor and device peaks."""
    import torch
    import torch.nn.functional as F

    torch.cuda.empty_cache()
    model = _peft_model(spec, req) if req.lora_r else model_from_config(spec, req, device="cuda")
    model.train(req.mode == "train")
    if req.grad_checkpointing:
        model.gradient_checkpointing_enable({"use_reentrant": False})
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    ids = torch.randint(1, spec.vocab_size, (req.batch_size, req.max_length), device="cuda")
    mask = torch.ones_like(ids)
    mask[:, -max(1, req.max_length // 8) :] = 0  # padded batch: SDPA gets a mask, as in training
    labels = torch.zeros(req.batch_size, dtype=torch.long, device="cuda")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(req.optimizer, params)
    low = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(req.precision)
    for _ in range(2):
        for _ in range(2):
            with torch.autocast("cuda", dtype=low or torch.float16, enabled=low is not None):
                loss = F.cross_entropy(model(input_ids=ids, attention_mask=mask).logits, labels)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    out: dict[str, Any] = {}

    def phase(name: str) -> None:
        allocated, reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
        nvml = process_memory_bytes()
        out[f"{name}_allocated_gb"], out[f"{name}_reserved_gb"] = allocated / GIB, reserved / GIB
        out[f"{name}_device_gb"] = (nvml if nvml else reserved + CUDA_CONTEXT) / GIB

    phase("train")
    out["card"] = torch.cuda.get_device_name(0)
    out["torch"] = torch.__version__
    if req.eval_batch_size:
        torch.cuda.empty_cache()  # as the trainer does: training's cached blocks go back before evaluation
        torch.cuda.reset_peak_memory_stats()
        model.eval()
        eval_ids = torch.randint(1, spec.vocab_size, (req.eval_batch_size, req.max_length), device="cuda")
        with torch.no_grad(), torch.autocast("cuda", dtype=low or torch.float16, enabled=low is not None):
            model(input_ids=eval_ids, attention_mask=torch.ones_like(eval_ids))
        torch.cuda.synchronize()
        phase("eval")
    del model, opt, loss
    gc.collect()
    torch.cuda.empty_cache()
    phases = [k.split("_")[0] for k in out if k.endswith("_device_gb")]
    out["measured_gb"] = max(out[f"{ph}_allocated_gb"] for ph in phases)
    out["measured_device_gb"] = max(out[f"{ph}_device_gb"] for ph in phases)
    return out


def _peft_model(spec: ModelSpec, req: MemoryRequest, device: str = "cuda") -> Any:
    """The classifier with real peft LoRA adapters (what a LoRA trial trains): frozen base, adapters on the
    request's targets and the trainable score head."""
    from peft import LoraConfig, get_peft_model

    from hpo.config.catalog import lora_target_names

    base = model_from_config(spec, replace(req, lora_r=0), device=device)
    targets = list(lora_target_names(spec, req.lora_targets))
    lora = LoraConfig(r=req.lora_r, lora_alpha=2 * req.lora_r, target_modules=targets, task_type="SEQ_CLS")
    return get_peft_model(base, lora)


def grid(models: list[str], quick: bool, kind: str = "encoders") -> list[tuple[str, MemoryRequest]]:
    if kind == "lora":
        return [
            (m, MemoryRequest(b, s, precision=p, grad_checkpointing=c, lora_r=LORA_R))
            for m in models
            for b, s, p, c in LORA_CONFIGS
        ]
    batches, lengths = ((8,), (128,)) if quick else (BATCHES, LENGTHS)
    combos = itertools.product(models, batches, lengths, PRECISIONS, CHECKPOINTING)
    return [(m, MemoryRequest(b, s, precision=p, grad_checkpointing=c)) for m, b, s, p, c in combos]


def run(
    models: list[str],
    quick: bool,
    cuda: bool,
    eval_batch: int = 0,
    kind: str = "encoders",
    out: Path | None = None,
) -> list[dict[str, Any]]:
    """Estimate (and on CUDA measure) every configuration of the grid; with ``out``, the rows so far are
    rewritten after each one, so a run cut short keeps what it measured."""
    rows: list[dict[str, Any]] = []
    for name, req in grid(models, quick, kind):
        spec = get_spec(name)
        req = with_evaluation(spec, req, eval_batch)  # the eval batch a trial would run with
        start = time.perf_counter()
        traced, analytic = trace_estimate(spec, req), estimate(spec, req)
        row: dict[str, Any] = {
            "model": name,
            "batch": req.batch_size,
            "length": req.max_length,
            "precision": req.precision,
            "ckpt": req.grad_checkpointing,
            "lora_r": req.lora_r,
            "optimizer": req.optimizer,
            "eval_batch": req.eval_batch_size,
            "analytic_gb": analytic.total_gb,
            "trace_gb": traced.total_gb,
            "analytic_device_gb": analytic.device_total_gb,
            "err_vs_trace": analytic.total_bytes / traced.total_bytes - 1,
            "trace_s": time.perf_counter() - start,
        }
        if cuda:
            try:
                row.update(measure_cuda(spec, req))
                row["err_vs_measured"] = row["analytic_gb"] / row["measured_gb"] - 1
                row["device_err_vs_measured"] = row["analytic_device_gb"] / row["measured_device_gb"] - 1
            except RuntimeError as exc:  # a real OOM on a small card: record and go on
                row["measured_error"] = str(exc).splitlines()[0]
        rows.append(row)
        print_row(row)
        if out:
            write(out, rows, {})
    return rows


def print_row(row: dict[str, Any]) -> None:
    line = (
        f"{row['model'][:18]:18} {row['batch']:>5} {row['length']:>6} {row['precision']:>9} "
        f"{'ckpt' if row['ckpt'] else '':>4} {row['analytic_gb']:>9.3f} {row['trace_gb']:>9.3f} "
        f"{100 * row['err_vs_trace']:>+7.1f}%"
    )
    if "measured_gb" in row:
        line += f" {row['measured_gb']:>9.3f} {100 * row['err_vs_measured']:>+7.1f}%"
        line += f" {row['measured_device_gb']:>9.3f} {100 * row['device_err_vs_measured']:>+7.1f}%"
    print(line, flush=True)


def summarize(rows: list[dict[str, Any]], per_call_s: float) -> dict[str, Any]:
    errs = [abs(r["err_vs_trace"]) for r in rows]
    out: dict[str, Any] = {
        "configs": len(rows),
        "median_abs_err_vs_trace": statistics.median(errs),
        "max_abs_err_vs_trace": max(errs),
        "max_under_vs_trace": max(0.0, -min(r["err_vs_trace"] for r in rows)),
        "estimate_ms_per_call": per_call_s * 1000,
    }
    measured = [r for r in rows if "device_err_vs_measured" in r]
    if measured:
        dev = [r["device_err_vs_measured"] for r in measured]
        tensor = [abs(r["err_vs_measured"]) for r in measured]
        out.update(
            median_abs_err_vs_measured_device=statistics.median(abs(e) for e in dev),
            max_under_vs_measured_device=max(0.0, -min(dev)),
            median_abs_err_vs_measured_tensor=statistics.median(tensor),
        )
    return out


def write(path: Path, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        keys = sorted({k for r in rows for k in r})
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))


def calibrate(rows: list[dict[str, Any]], path: Path) -> int:
    """Record each measured device peak next to its estimate in a calibration file (hpo.memory.calibrate),
    keyed by this card; returns how many rows were recorded."""
    from hpo.device.gpu import detect
    from hpo.memory.calibrate import Calibration, calibration_key

    card, cal, n = detect(0), Calibration(path), 0
    for row in rows:
        if "measured_device_gb" not in row or row.get("lora_r"):
            continue
        req = MemoryRequest(
            row["batch"], row["length"], precision=row["precision"], grad_checkpointing=row["ckpt"]
        )
        key = calibration_key(row["model"], card.name, card.total_bytes, req)
        cal.record_peak(key, req, int(row["analytic_device_gb"] * GIB), int(row["measured_device_gb"] * GIB))
        n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the rows to this .json or .csv file")
    parser.add_argument("--quick", action="store_true", help="batch 8, length 128 only")
    parser.add_argument("--models", help="comma-separated catalog names (default: the grid's models)")
    parser.add_argument("--grid", choices=("encoders", "lora"), default="encoders", help="which grid to run")
    parser.add_argument("--gpu-check", action="store_true", help="real trainings on CUDA; exit 0 without")
    parser.add_argument("--calibration", type=Path, help="with --gpu-check: write measured peaks here")
    args = parser.parse_args(argv)
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        cuda = False
    if args.gpu_check and not cuda:
        print("gpu-check: no CUDA device on this machine; nothing measured (run `make gpu-check` on a GPU)")
        return 0
    spec = get_spec("bert-large-uncased")
    req = MemoryRequest(32, 512, precision="fp16", lora_r=8)
    estimate(spec, replace(req, batch_size=16))  # warm up
    per_call = min(timeit.repeat(lambda: estimate(spec, req), number=500, repeat=3)) / 500
    header = f"{'model':18} {'batch':>5} {'length':>6} {'precision':>9} {'':>4} {'analytic':>9} {'trace':>9}"
    header += f" {'err':>8}"
    print(header + (f" {'measured':>9} {'err':>8} {'device':>9} {'err':>8}" if cuda else ""))
    if args.grid == "lora" and cuda and importlib.util.find_spec("peft") is None:
        print("gpu-check: the LoRA grid needs peft (pip install peft); nothing measured")
        return 0
    default = LORA_MODELS if args.grid == "lora" else MODELS
    models = [m.strip() for m in (args.models or ",".join(default)).split(",") if m.strip()]
    rows = run(models, args.quick, cuda, 64 if args.gpu_check else 0, args.grid, args.out)
    summary = summarize(rows, per_call)
    print()
    for key, value in summary.items():
        print(f"{key:36} {value:.4f}" if isinstance(value, float) else f"{key:36} {value}")
    if args.out:
        write(args.out, rows, summary)
        print(f"wrote {args.out}")
    if args.gpu_check and args.calibration:
        print(f"calibration: {calibrate(rows, args.calibration)} measured peaks -> {args.calibration}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
