"""Leave-one-source-out validation of the allocator fit (hpo.bench.loso, scripts/bench_loso.py): the fit
recovers a known allocator, the grid evaluation is the estimator's, and the held-out errors stay within
the bounds measured when this was written (README "Measured"), with a little slack."""

from __future__ import annotations

import csv
import json
import runpy
from dataclasses import replace
from pathlib import Path

import pytest

from hpo.bench import loso
from hpo.bench.loso import ENCODERS, EXPANDABLE, LITGPT, LORA, TINY, V100, Grid, Row
from hpo.config.catalog import get_spec
from hpo.device.allocator import DEFAULT_ALLOCATOR, Allocator
from hpo.memory.budget import MemoryRequest
from hpo.memory.estimate import estimate
from hpo.units import MIB

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_loso.py"
SMALL = Grid(
    transient=(0.1, 0.2, 0.3, 0.4),
    persistent=(0.0, 0.02, 0.05),
    floor_mib=(0, 128, 256),
    eval_transient=(0.3, 0.6, 0.9),
)
# held-out bounds: measured -13.2 % (V100), -9.0 % (encoders), -0.8 % (LoRA) at the worst, +18.5 % at most;
# expandable_segments +1.4 %..+29.3 %, litgpt -11.4 %..+4.2 %; each with 2 points of slack
HELD_OUT = {
    V100: (-0.152, 0.04),
    ENCODERS: (-0.11, 0.205),
    LORA: (-0.03, 0.165),
    EXPANDABLE: (0.0, 0.315),
    TINY: (0.15, 0.25),
    LITGPT: (-0.135, 0.065),
}


def fitted_rows() -> tuple[Row, ...]:
    return tuple(r for s in loso.sources() if s.fitted for r in s.rows)


def test_sources_and_their_rows() -> None:
    names = [(s.name, len(s.rows), s.fitted, s.level) for s in loso.sources()]
    assert names == [
        (V100, 9, True, "device"),
        (ENCODERS, 48, True, "device"),
        (LORA, 10, True, "device"),
        (EXPANDABLE, 43, False, "device"),
        (TINY, 24, False, "device"),
        (LITGPT, 8, False, "tensor"),
    ]
    assert not any("tiny" in r.label for s in loso.sources() if s.name != TINY for r in s.rows)


def test_a_row_is_the_estimators_device_total_with_its_own_context() -> None:
    with (loso.DATA / "gpu" / "h200_encoders.csv").open() as handle:
        first = next(r for r in csv.DictReader(handle) if r["model"] == "bert-base-uncased")
    req = MemoryRequest(
        int(first["batch"]), int(first["length"]), precision=first["precision"],
        grad_checkpointing=first["ckpt"] == "True", eval_batch_size=int(first["eval_batch"]),
    )  # fmt: skip
    row = next(s for s in loso.sources() if s.name == ENCODERS).rows[0]
    assert 740 * MIB <= row.context <= 780 * MIB
    alloc = replace(DEFAULT_ALLOCATOR, context_bytes=row.context)
    assert row.predicted() == estimate(get_spec("bert-base-uncased"), req, alloc).device_total_bytes


def test_the_grid_evaluates_what_the_allocator_computes() -> None:
    rows = fitted_rows()
    errors, points = loso.grid_errors(rows, SMALL)
    for k in (0, 17, len(points) - 1):
        expected = [r.error(points[k]) for r in rows]
        assert errors[k] == pytest.approx(expected, abs=1e-9)


def test_the_fit_recovers_a_known_allocator() -> None:
    """Rows whose measured peak is exactly what a known allocator predicts are fitted back to it."""
    known = Allocator(transient=0.3, persistent=0.02, floor_bytes=128 * MIB, eval_transient=0.6)
    rows = tuple(replace(r, measured=r.predicted(known)) for r in fitted_rows())
    got = loso.fit(rows, SMALL)
    assert (got.transient, got.persistent, got.floor_bytes, got.eval_transient) == (0.3, 0.02, 128 * MIB, 0.6)
    assert max(abs(r.error(got)) for r in rows) < 1e-6


def test_with_no_qualifying_point_the_fit_minimises_the_worst_under_prediction() -> None:
    rows = tuple(replace(r, measured=2 * r.predicted()) for r in fitted_rows())  # all ~50 % under
    got = loso.fit(rows, SMALL)
    errors, _ = loso.grid_errors(rows, SMALL)
    worst = min(r.error(got) for r in rows)
    assert worst < -loso.NEVER_UNDER and worst == pytest.approx(errors.min(axis=1).max(), abs=1e-9)
    assert (got.floor_bytes, got.eval_transient) == (256 * MIB, 0.9)  # the largest overheads


def test_the_fit_on_every_source_reproduces_the_shipped_allocator() -> None:
    """What the grid gives on all three fitted sources: 0.25 / 0.005 / 192 MiB / 0.70 (shipped: 0.25 / 0.01
    / 256 MiB / 0.80): the training transient is the same, the rest within one or two grid steps."""
    fitted = loso.folds()["all"]
    assert fitted.transient == DEFAULT_ALLOCATOR.transient
    assert abs(fitted.persistent - DEFAULT_ALLOCATOR.persistent) <= 0.005 + 1e-9
    assert abs(fitted.floor_bytes - DEFAULT_ALLOCATOR.floor_bytes) <= 64 * MIB
    assert abs(fitted.eval_transient - DEFAULT_ALLOCATOR.eval_transient) <= 0.1 + 1e-9
    assert min(r.error(fitted) for r in fitted_rows()) >= -loso.NEVER_UNDER


def test_the_loso_table_has_a_held_out_row_per_source_within_the_measured_bounds() -> None:
    table = loso.loso_table()
    held = {r.source: r for r in table if r.fit.startswith("held out (")}
    assert list(held) == [s.name for s in loso.sources()]
    in_sample = {r.source for r in table if r.fit.startswith("in-sample")}
    assert in_sample == {V100, ENCODERS, LORA}
    for name, (lo, hi) in HELD_OUT.items():
        r = held[name]
        assert r.n == len(next(s for s in loso.sources() if s.name == name).rows)
        assert lo <= r.min <= r.median <= r.max <= hi, (name, r)
        assert r.worst_under == min(0.0, r.min) and 0.0 <= r.share_under_5 <= 1.0
    # the held-out error is worse than the in-sample one where it matters: the check can fail
    assert held[V100].min < -loso.NEVER_UNDER and held[V100].share_under_5 > 0.3


def test_held_out_ratios_are_measured_over_estimated() -> None:
    ratios = loso.held_out_ratios()
    assert len(ratios) == 67 and 0.84 < min(ratios) < 1.0 < max(ratios) < 1.17
    assert sum(r > 1.05 for r in ratios) >= 3  # some true footprints are over the estimate + 5 %


def test_script_prints_markdown_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "loso.json"
    assert runpy.run_path(str(SCRIPT))["main"](["--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| source | fit |" in printed and f"| {V100} | held out (fit on 2 other sources) |" in printed
    payload = json.loads(out.read_text())
    assert len(payload["table"]) == 11 and len(payload["held_out_ratios"]) == 67
    assert set(payload["fits"]) == {"all", V100, ENCODERS, LORA}
