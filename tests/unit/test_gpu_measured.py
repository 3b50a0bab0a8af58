"""The estimate against peaks measured on a real GPU by ``make gpu-check`` (tests/data/gpu/, an NVIDIA H200).

``scripts/bench_estimator.py --gpu-check`` ran hpo's step on the card: 2 optimizer steps of 2 micro-steps,
then one evaluation batch with the optimizer state resident, after returning training's cached blocks as
the trainer does (hpo.train.loop.release_cached_blocks). Each row holds the allocated and reserved peaks per
phase and the device peak (NVML). Files (h200_env.txt: card, driver, torch, transformers, peft):

- h200_encoders.csv: bert-base / bert-large (and hpo-tiny-bert) x batch 8, 32 x length 128, 512 x fp32, fp16
  autocast, pure bf16 x gradient checkpointing: 72 rows;
- h200_lora.csv: Llama-2-7B (random weights from its config) with peft LoRA r=16 on q/v, bf16: 10 rows;
- *_no_release.csv: the same without releasing the cache before evaluation (why the trainer does);
- *_expandable.csv: with PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True (the encoder run was cut at 57).

The allocator's overhead parameters were fitted to these rows together with the V100 table
(test_published_peaks.py), so the device-level bounds check that fit and guard later changes; the tensor
level (allocated) is not fitted.
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import replace
from pathlib import Path

import pytest

from hpo.config.catalog import get_spec
from hpo.device.allocator import DEFAULT_ALLOCATOR, Allocator
from hpo.device.gpu import profiles
from hpo.memory.budget import MemoryRequest
from hpo.memory.estimate import estimate
from hpo.units import GIB, MIB

DATA = Path(__file__).resolve().parents[1] / "data" / "gpu"
MEASURED = ("h200_encoders.csv", "h200_lora.csv")
NEVER_UNDER, WITHIN, MEDIAN = 0.05, 0.20, 0.06


def rows(*names: str) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for name in names:
        with (DATA / name).open() as handle:
            out.extend(csv.DictReader(handle))
    return out


def request(row: dict[str, str]) -> MemoryRequest:
    return MemoryRequest(
        int(row["batch"]),
        int(row["length"]),
        precision=row["precision"],
        optimizer=row["optimizer"],
        grad_checkpointing=row["ckpt"] == "True",
        lora_r=int(row["lora_r"]),
        eval_batch_size=int(row["eval_batch"]),
    )


def context_bytes(row: dict[str, str]) -> int:
    """The row's measured CUDA context: NVML process memory minus the allocator's reserved bytes."""
    return int((float(row["train_device_gb"]) - float(row["train_reserved_gb"])) * GIB)


def device_error(row: dict[str, str], alloc: Allocator = DEFAULT_ALLOCATOR) -> float:
    alloc = replace(alloc, context_bytes=context_bytes(row))
    predicted = estimate(get_spec(row["model"]), request(row), alloc).device_total_bytes
    return predicted / (float(row["measured_device_gb"]) * GIB) - 1


def test_the_data_says_where_it_was_measured() -> None:
    env = (DATA / "h200_env.txt").read_text()
    assert "NVIDIA H200" in env and "2.11.0+cu130" in env and "580.159.04" in env
    assert len(rows(*MEASURED)) == 82
    assert {r["card"] for r in rows(*MEASURED)} == {"NVIDIA H200"}


def real(row: dict[str, str]) -> bool:
    """Rows of real models; hpo-tiny-bert (a few MiB of tensors) is dominated by the allocator's floor."""
    return row["model"] != "hpo-tiny-bert"


def label(row: dict[str, str]) -> str:
    ckpt = "-ckpt" if row["ckpt"] == "True" else ""
    return f"{row['model']}-{row['batch']}x{row['length']}-{row['precision']}{ckpt}"


@pytest.mark.parametrize("row", rows(*MEASURED), ids=label)
def test_device_peak_never_5_percent_under_nor_20_percent_over(row: dict[str, str]) -> None:
    error = device_error(row)
    assert -NEVER_UNDER <= error <= (WITHIN if real(row) else 0.35), f"{error:+.1%}"


def test_device_peak_median_error_is_small() -> None:
    assert statistics.median(abs(device_error(r)) for r in rows(*MEASURED) if real(r)) <= MEDIAN


def test_tensor_peak_is_the_measured_allocated_peak() -> None:
    """The logical tensor peak (max_memory_allocated over the phases) is not fitted: median within 1 %,
    never more than 8 % under (pure-bf16 bert-base, where 100 MiB of small buffers count) nor 2 % over."""
    errors = [
        estimate(get_spec(r["model"]), request(r)).total_bytes / (float(r["measured_gb"]) * GIB) - 1
        for r in rows(*MEASURED)
    ]
    assert statistics.median(abs(e) for e in errors) <= 0.01
    assert min(errors) >= -0.08 and max(errors) <= 0.04


def test_the_80gb_profile_states_the_measured_context() -> None:
    contexts = [context_bytes(r) for r in rows(*MEASURED, "h200_lora_no_release.csv")]
    profile = next(p for p in profiles() if p.name == "80gb")
    assert min(contexts) >= 740 * MIB and max(contexts) <= profile.allocator.context_bytes


def test_expandable_segments_stay_within_the_model() -> None:
    """expandable_segments fragments less: those peaks are covered by the same model (not credited)."""
    expandable = rows("h200_lora_expandable.csv", "h200_encoders_expandable.csv")
    assert len(expandable) == 67 and all(device_error(r) >= -NEVER_UNDER for r in expandable)


def test_the_check_can_fail() -> None:
    """The model before these measurements (one transient for every phase, 64 MiB floor) under-predicted
    4 of the H200 rows by more than 5 % (those of the smaller models: the floor and the context)."""
    old = Allocator(transient=0.30, persistent=0.01, floor_bytes=64 * MIB, eval_transient=0.30)
    assert sum(device_error(r, old) < -NEVER_UNDER for r in rows(*MEASURED)) >= 3
