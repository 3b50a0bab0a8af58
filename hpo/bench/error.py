"""The estimator's error as the scheduler benchmark draws it: true footprint / estimate per trial.

"published": a ratio drawn (with replacement) from measured / estimated over the published measured peaks
(tests/data/published_peaks.csv, recomputed with the current estimator on every run, so the benchmark moves
when the estimator does); "lognormal:S": exp(N(0, S)), for stress beyond what the table covers; "none":
the estimate is exact (what the old benchmark assumed, so that its memory-aware rows could not crash).
"""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

from hpo.allocator import DEFAULT_ALLOCATOR
from hpo.bench.mix import Error
from hpo.errors import ConfigError
from hpo.memory.budget import MemoryRequest
from hpo.memory.catalog import get_spec
from hpo.memory.estimate import estimate
from hpo.units import MIB


def published_rows(table: Path) -> list[dict[str, str]]:
    """The rows of a published-peaks table (``#`` lines are its sources and notes)."""
    lines = [line for line in table.read_text().splitlines() if line and not line.startswith("#")]
    return list(csv.DictReader(lines))


def predicted_bytes(row: dict[str, str]) -> int:
    """The estimate's device peak for one published row, with that card's measured CUDA context."""
    req = MemoryRequest(
        batch_size=int(row["batch_size"]),
        max_length=int(row["max_length"]),
        precision=row["precision"],
        optimizer=row["optimizer"],
        grad_checkpointing=row["grad_checkpointing"] == "true",
        attn_impl=row["attn_impl"],
        foreach=row["foreach"] == "true",
    )
    alloc = replace(DEFAULT_ALLOCATOR, context_bytes=int(row["context_mib"]) * MIB)
    return estimate(get_spec(row["model"]), req, alloc).device_total_bytes


def published_ratios(table: Path) -> list[float]:
    """measured / estimated device peak for each row of a published-peaks table (its own CUDA context)."""
    return [int(row["measured_mib"]) * MIB / predicted_bytes(row) for row in published_rows(table)]


def error_model(spec: str, table: Path | None = None) -> tuple[Error | None, str]:
    """The error sampler named by ``spec`` and a one-line description of it."""
    if spec == "none":
        return None, "none (true footprint = estimate)"
    if spec == "published":
        if table is None or not table.exists():
            raise ConfigError(f"no published-peaks table at {table}", "pass --published-table")
        ratios = published_ratios(table)
        text = f"measured/estimated of {len(ratios)} published rows ({min(ratios):.3f}..{max(ratios):.3f})"
        return (lambda rng: rng.choice(ratios)), text
    if spec.startswith("lognormal:"):
        sigma = float(spec.split(":", 1)[1])
        return (lambda rng: math.exp(rng.gauss(0.0, sigma))), f"lognormal, sigma {sigma:g}"
    raise ConfigError(f"unknown error model {spec!r}", "use published, none or lognormal:SIGMA")
