"""The estimator's error as the scheduler benchmark draws it: true footprint / estimate per trial, and the
true CUDA context of a worker.

"loso" (the default): a ratio drawn (with replacement) from measured / estimated over the held-out rows of
the leave-one-source-out validation (hpo.bench.loso.held_out_ratios: each device peak estimated with the
allocator fitted without its source, recomputed on every run, so the benchmark moves when the estimator
does); "published": from the in-sample residual over the published V100 peaks (tests/data/
published_peaks.csv, rows the allocator was fitted to: optimistic); "lognormal:S": exp(N(0, S)), for stress
beyond what the tables cover; "none": the estimate is exact (the memory-aware rows cannot then run out of
memory inside their caps).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import replace
from pathlib import Path

from hpo.bench.loso import DATA, ENCODERS, LORA, TINY, held_out_ratios, published_request, published_rows
from hpo.bench.loso import sources as loso_sources
from hpo.bench.mix import Error
from hpo.config.catalog import get_spec
from hpo.device.allocator import DEFAULT_ALLOCATOR
from hpo.errors import ConfigError
from hpo.memory.estimate import estimate
from hpo.units import MIB

__all__ = ["error_model", "measured_contexts", "predicted_bytes", "published_ratios", "published_rows"]


def predicted_bytes(row: dict[str, str]) -> int:
    """The estimate's device peak for one published row, with that card's measured CUDA context."""
    alloc = replace(DEFAULT_ALLOCATOR, context_bytes=int(row["context_mib"]) * MIB)
    return estimate(get_spec(row["model"]), published_request(row), alloc).device_total_bytes


def published_ratios(table: Path) -> list[float]:
    """measured / estimated device peak for each row of a published-peaks table (its own CUDA context)."""
    return [int(row["measured_mib"]) * MIB / predicted_bytes(row) for row in published_rows(table)]


def measured_contexts(data: Path = DATA) -> list[int]:
    """CUDA contexts of trained processes measured on a real card (the H200 rows: NVML process memory less
    the allocator's reserved bytes after training, lazy kernel loading included): 742-776 MiB."""
    names = (ENCODERS, LORA, TINY)
    return [r.context for s in loso_sources(data) if s.name in names for r in s.rows]


def true_context_bytes(mib: float | None = None, data: Path = DATA) -> int:
    """A worker's real CUDA context for the benchmark: ``mib`` if given, else the median measured one."""
    return int(mib * MIB) if mib is not None else int(statistics.median(measured_contexts(data)))


def error_model(spec: str, table: Path | None = None, data: Path = DATA) -> tuple[Error | None, str]:
    """The error sampler named by ``spec`` and a one-line description of it."""
    if spec == "none":
        return None, "none (true footprint = estimate)"
    if spec in ("loso", "published"):
        if spec == "loso":
            ratios, what = held_out_ratios(data), "held-out (leave-one-source-out) rows"
        elif table is None or not table.exists():
            raise ConfigError(f"no published-peaks table at {table}", "pass --published-table")
        else:
            ratios, what = published_ratios(table), "published rows (in-sample)"
        text = f"measured/estimated of {len(ratios)} {what} ({min(ratios):.3f}..{max(ratios):.3f})"
        return (lambda rng: rng.choice(ratios)), text
    if spec.startswith("lognormal:"):
        sigma = float(spec.split(":", 1)[1])
        return (lambda rng: math.exp(rng.gauss(0.0, sigma))), f"lognormal, sigma {sigma:g}"
    raise ConfigError(f"unknown error model {spec!r}", "use loso, published, none or lognormal:SIGMA")
