"""Leave-one-source-out validation of the allocator fit (hpo/device/allocator.py): how wrong is the estimate
on a source of measured peaks that the fit never saw?

Sources of measured device peaks (each row with its own measured CUDA context, as the tests compare them):
- "V100 HF-Trainer bert-large (published)": tests/data/published_peaks.csv (9 rows, HF docs);
- "H200 hpo step, encoders": tests/data/gpu/h200_encoders.csv, bert-base/large (48 rows);
- "H200 hpo step, Llama-2-7B LoRA": tests/data/gpu/h200_lora.csv (10 rows).
Those three are what the shipped allocator was fitted to; each is a fold. Held out from every fit (scored
with the fit on all three): the same H200 step under expandable_segments (*_expandable.csv, real models:
what hpo's workers run with), hpo-tiny-bert's H200 rows (a few MiB of tensors: the allocator's floor and
the context make its peak, as test_gpu_measured.py keeps them apart from the real-model bounds), and the
published litgpt 7B LoRA/QLoRA peaks (tests/data/published_lora_peaks.csv: max_memory_allocated, so the
tensor-level estimate, no allocator: nothing there is fitted).

The fit (``fit``): a grid over (transient, persistent, floor, eval_transient). Criterion: the least median
|error| over the fitted rows among the grid points where no fitted row is more than ``NEVER_UNDER`` under
its measured peak (ties: the least largest |error|); if no point qualifies, the least worst
under-prediction. The device total is linear in the allocator's parameters given a row's tensor
components per phase, so each row's components are computed once (hpo.memory.estimate.phase_tensors) and
the grid is evaluated with numpy.
"""

from __future__ import annotations

import csv
import functools
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from hpo.config.catalog import LORA_TARGET_SETS, get_spec
from hpo.device.allocator import DEFAULT_ALLOCATOR, Allocator
from hpo.memory.budget import MemoryRequest, device_budget
from hpo.memory.estimate import phase_tensors
from hpo.units import GIB, MIB

DATA = Path(__file__).resolve().parents[2] / "tests" / "data"
NEVER_UNDER = 0.05
V100, ENCODERS, LORA = (
    "V100 HF-Trainer bert-large (published)",
    "H200 hpo step, encoders",
    "H200 hpo step, Llama-2-7B LoRA",
)
EXPANDABLE, TINY = "H200 hpo step, expandable_segments", "H200 hpo step, hpo-tiny-bert"
LITGPT = "litgpt 7B LoRA/QLoRA (published, tensor level)"


def _steps(lo: float, hi: float, step: float) -> tuple[float, ...]:
    return tuple(round(lo + k * step, 4) for k in range(round((hi - lo) / step) + 1))


@dataclass(frozen=True)
class Grid:
    """The allocator parameters the fit searches."""

    transient: tuple[float, ...] = _steps(0.0, 0.5, 0.01)
    persistent: tuple[float, ...] = _steps(0.0, 0.05, 0.005)
    floor_mib: tuple[int, ...] = (0, 64, 128, 192, 256, 320, 384, 512)
    eval_transient: tuple[float, ...] = _steps(0.0, 1.5, 0.05)


@dataclass(frozen=True)
class Row:
    """One measured peak and the estimate's tensor components per phase (context: the row's own)."""

    label: str
    measured: int  # bytes: the device peak (NVML), or torch's allocated peak for tensor-level rows
    context: int
    phases: dict[str, dict[str, int]] = field(hash=False)

    def predicted(self, alloc: Allocator = DEFAULT_ALLOCATOR, level: str = "device") -> int:
        budget = device_budget(self.phases, "analytic", replace(alloc, context_bytes=self.context))
        return budget.device_total_bytes if level == "device" else budget.total_bytes

    def error(self, alloc: Allocator = DEFAULT_ALLOCATOR, level: str = "device") -> float:
        return self.predicted(alloc, level) / self.measured - 1


@dataclass(frozen=True)
class Source:
    name: str
    rows: tuple[Row, ...]
    fitted: bool  # one of the fit's sources (a fold); False: held out from every fit
    level: str = "device"  # "tensor": compared with the estimate's logical peak (no allocator)


def published_rows(table: Path) -> list[dict[str, str]]:
    """The rows of a published-peaks table (``#`` lines are its sources and notes)."""
    lines = [line for line in table.read_text().splitlines() if line and not line.startswith("#")]
    return list(csv.DictReader(lines))


def published_request(row: dict[str, str]) -> MemoryRequest:
    """The request of a row of tests/data/published_peaks.csv."""
    return MemoryRequest(
        batch_size=int(row["batch_size"]),
        max_length=int(row["max_length"]),
        precision=row["precision"],
        optimizer=row["optimizer"],
        grad_checkpointing=row["grad_checkpointing"] == "true",
        attn_impl=row["attn_impl"],
        foreach=row["foreach"] == "true",
    )


def _h200(path: Path) -> list[Row]:
    """Rows of a `make gpu-check` file; context = NVML process memory - reserved (test_gpu_measured.py)."""
    out = []
    with path.open() as handle:
        for r in csv.DictReader(handle):
            req = MemoryRequest(
                int(r["batch"]), int(r["length"]), precision=r["precision"], optimizer=r["optimizer"],
                grad_checkpointing=r["ckpt"] == "True", lora_r=int(r["lora_r"]),
                eval_batch_size=int(r["eval_batch"]),
            )  # fmt: skip
            ckpt = "-ckpt" if req.grad_checkpointing else ""
            label = f"{r['model']}-{req.batch_size}x{req.max_length}-{req.precision}{ckpt}"
            context = int((float(r["train_device_gb"]) - float(r["train_reserved_gb"])) * GIB)
            phases = phase_tensors(get_spec(r["model"]), req)
            out.append(Row(label, int(float(r["measured_device_gb"]) * GIB), context, phases))
    return out


def _litgpt(path: Path) -> list[Row]:
    out = []
    for r in (r for r in published_rows(path) if r["measured_gb"]):
        req = MemoryRequest(
            batch_size=int(r["batch"]), max_length=int(r["seq_len"]), precision=r["precision"],
            optimizer=r["optimizer"], grad_checkpointing=r["grad_checkpointing"] == "true",
            lora_r=int(r["lora_r"]), lora_targets=LORA_TARGET_SETS[r["targets"]],
            lora_dropout=float(r["lora_dropout"]), quant=None if r["quant"] == "none" else r["quant"],
            attn_impl=r["attn"], head=r["head"], bnb_saves_inputs=r["bnb_saves_inputs"] == "true",
        )  # fmt: skip
        label = f"{r['model']}-{r['quant']}-{r['batch']}x{r['seq_len']}"
        phases = phase_tensors(get_spec(r["model"]), req)
        out.append(Row(label, int(float(r["measured_gb"]) * 1e9), 0, phases))  # litgpt prints / 1e9
    return out


@functools.cache
def sources(data: Path = DATA) -> tuple[Source, ...]:
    """Every source of measured peaks (module doc), the fitted ones first."""
    v100 = [
        Row(r["source"], int(r["measured_mib"]) * MIB, int(r["context_mib"]) * MIB,
            phase_tensors(get_spec(r["model"]), published_request(r)))
        for r in published_rows(data / "published_peaks.csv")
    ]  # fmt: skip
    gpu = data / "gpu"
    encoders = _h200(gpu / "h200_encoders.csv")
    expandable = _h200(gpu / "h200_encoders_expandable.csv") + _h200(gpu / "h200_lora_expandable.csv")
    real = lambda rows: tuple(r for r in rows if not r.label.startswith("hpo-tiny-bert"))  # noqa: E731
    return (
        Source(V100, tuple(v100), True),
        Source(ENCODERS, real(encoders), True),
        Source(LORA, tuple(_h200(gpu / "h200_lora.csv")), True),
        Source(EXPANDABLE, real(expandable), False),
        Source(TINY, tuple(r for r in encoders if r not in real(encoders)), False),
        Source(LITGPT, tuple(_litgpt(data / "published_lora_peaks.csv")), False, "tensor"),
    )


def _arrays(rows: tuple[Row, ...]) -> tuple[np.ndarray, ...]:
    """Per row and phase (train, optimizer_step, eval): tensor bytes, moving and fixed bytes (-inf tensors
    for a phase the row lacks), and the rows' contexts and measured peaks."""
    names = ("train", "optimizer_step", "eval")
    shape = (len(rows), len(names))
    tensors, moving, fixed = np.full(shape, -np.inf), np.zeros(shape), np.zeros(shape)
    for i, row in enumerate(rows):
        for j, name in enumerate(names):
            c = row.phases.get(name)
            if c is not None:
                tensors[i, j] = sum(c.values())
                moving[i, j] = c.get("activations", 0) + c.get("temporaries", 0)
                fixed[i, j] = sum(c.get(k, 0) for k in ("weights", "adapters", "gradients", "optimizer"))
    context = np.array([r.context for r in rows], float)
    return tensors, moving, fixed, context, np.array([r.measured for r in rows], float)


def grid_errors(rows: tuple[Row, ...], grid: Grid = Grid()) -> tuple[np.ndarray, list[Allocator]]:
    """predicted / measured - 1 of every row at every grid point: (points, rows), and the points."""
    tensors, moving, fixed, context, measured = _arrays(rows)
    t, e = np.array(grid.transient)[:, None], np.array(grid.eval_transient)[:, None]
    errors, points = [], []
    for p in grid.persistent:
        for floor in grid.floor_mib:
            # each phase's tensors + overhead at every transient (train, optimizer step) or eval_transient
            train, ev = (
                [tensors[:, j] + np.maximum(floor * MIB, np.floor(x * moving[:, j] + p * fixed[:, j]))
                 for j in js]
                for x, js in ((t, (0, 1)), (e, (2,)))
            )  # fmt: skip
            peak = np.maximum(np.maximum(*train)[:, None, :], ev[0][None, :, :])  # (transient, eval, rows)
            errors.append(((context + peak) / measured - 1).reshape(-1, len(rows)))
            points += [
                Allocator(transient=a, persistent=p, floor_bytes=floor * MIB, eval_transient=b)
                for a in grid.transient
                for b in grid.eval_transient
            ]
    return np.concatenate(errors), points


def fit(rows: tuple[Row, ...], grid: Grid = Grid(), never_under: float = NEVER_UNDER) -> Allocator:
    """The allocator the criterion (module doc) picks for ``rows`` from ``grid``."""
    errors, points = grid_errors(rows, grid)
    worst = errors.min(axis=1)
    ok = worst >= -never_under
    if not ok.any():
        return points[int(np.argmax(worst))]
    absolute = np.abs(errors)
    median, largest = np.median(absolute, axis=1), absolute.max(axis=1)
    order = np.lexsort((largest, np.where(ok, median, np.inf)))
    return points[int(order[0])]


@dataclass(frozen=True)
class Errors:
    """predicted / measured - 1 over one source's rows under one fit."""

    source: str
    fit: str  # "in-sample (shipped DEFAULT_ALLOCATOR)" | "held out (fit on ...)" | "none (tensor level)"
    allocator: str
    n: int
    min: float
    median: float
    max: float
    worst_under: float  # the most negative error, 0 when no row is under
    share_under_5: float  # share of rows more than 5 % under their measured peak


def summarise(source: Source, alloc: Allocator, how: str) -> Errors:
    errs = [r.error(alloc, source.level) for r in source.rows]
    shown = "-" if source.level == "tensor" else describe(alloc)
    share = sum(e < -NEVER_UNDER for e in errs) / len(errs)
    return Errors(source.name, how, shown, len(errs), min(errs), statistics.median(errs), max(errs),
                  min(0.0, *errs), share)  # fmt: skip


def describe(alloc: Allocator) -> str:
    return (
        f"{alloc.transient:g} / {alloc.persistent:g} / {alloc.floor_bytes // MIB} MiB / "
        f"{alloc.eval_transient:g}"
    )


def folds(data: Path = DATA, grid: Grid = Grid()) -> dict[str, Allocator]:
    """Source name -> the allocator fitted without it ("all": fitted on every fitted source)."""
    return _folds(data, grid)


@functools.cache
def _folds(data: Path, grid: Grid) -> dict[str, Allocator]:
    fitted = [s for s in sources(data) if s.fitted]
    out = {"all": fit(tuple(r for s in fitted for r in s.rows), grid)}
    for held in fitted:
        out[held.name] = fit(tuple(r for s in fitted if s is not held for r in s.rows), grid)
    return out


def loso_table(data: Path = DATA, grid: Grid = Grid()) -> list[Errors]:
    """Per source: the shipped allocator's error (in-sample for the fitted sources) and the held-out one."""
    fits, out = folds(data, grid), []
    fitted = [s.name for s in sources(data) if s.fitted]
    for source in sources(data):
        if source.level == "tensor":
            out.append(summarise(source, DEFAULT_ALLOCATOR, "held out (tensor level, nothing fitted)"))
            continue
        shipped = "in-sample" if source.fitted else "held out"
        out.append(summarise(source, DEFAULT_ALLOCATOR, f"{shipped} (shipped DEFAULT_ALLOCATOR)"))
        others = [n for n in fitted if n != source.name]
        held = fits[source.name] if source.fitted else fits["all"]
        out.append(summarise(source, held, f"held out (fit on {len(others)} other sources)"))
    return out


def held_out_ratios(data: Path = DATA, grid: Grid = Grid()) -> list[float]:
    """measured / estimated device peak of each row of the fitted sources, each estimated with the
    allocator fitted without its source: the "true footprint / estimate" of a setup the fit never saw."""
    fits = folds(data, grid)
    return [r.measured / r.predicted(fits[s.name]) for s in sources(data) if s.fitted for r in s.rows]
