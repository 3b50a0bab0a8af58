"""Scheduler benchmark: simulation invariants, the comparison on a small mix, the script's main."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

GIB = 2**30
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_scheduler.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_scheduler", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_scheduler"] = module
    spec.loader.exec_module(module)
    return module


def synthetic(model: str, batch: int, length: int, precision: str, ckpt: bool) -> int:
    """Footprints between ~2 and ~12 GiB, growing with model size, batch and length (no estimator needed)."""
    base = 4.0 if "large" in model else 1.5
    tokens = batch * length / (4096 if ckpt else 2048) * (1.0 if precision == "fp32" else 0.6)
    return int((base + min(tokens, 8.0)) * GIB)


def test_memory_aware_never_crashes_and_beats_fixed_par2(bench: ModuleType) -> None:
    """On a synthetic 2-12 GiB mix (packing matters, no estimator needed); full-size numbers: the script."""
    card, capacity = 24 * GIB, int(22.5 * GIB)
    mix = bench.Mix(1, synthetic, capacity)
    results = {(r.policy, r.par): r for r in bench.run_all(mix, 60, 4, card, capacity)}
    memory, fixed2, fixed4 = results["memory", 4], results["fixed", 2], results["fixed", 4]
    assert memory.crashes == memory.lost == 0 and memory.completed == 60
    assert memory.max_in_use_gib <= 22.5
    assert memory.trials_per_hour >= fixed2.trials_per_hour
    assert fixed4.crashes > 0 and fixed4.wasted_gpu_hours > 0
    assert results["fixed", 1].crashes == 0 and results["fixed", 1].completed == 60


def test_simulation_is_seeded(bench: ModuleType) -> None:
    def run(seed: int) -> list[object]:
        mix = bench.Mix(seed, synthetic, 22 * GIB)
        return bench.run_all(mix, 30, 4, 24 * GIB, 22 * GIB, contention=True)

    assert run(3) == run(3) != run(4)


def test_crash_accounting_on_two_big_trials(bench: ModuleType) -> None:
    mix = bench.Mix(0, lambda *cfg: 15 * GIB, 22 * GIB)
    fixed = bench.simulate(mix, 2, "fixed", 2, 24 * GIB, 22 * GIB, crash_kills="all", lost="drop")
    assert (fixed.crashes, fixed.lost, fixed.completed) == (1, 2, 0)
    # the newest attempt dies and reruns beside the same neighbour until it runs out of attempts
    retried = bench.simulate(mix, 2, "fixed", 2, 24 * GIB, 22 * GIB, crash_kills="newest", max_attempts=3)
    assert (retried.crashes, retried.lost, retried.completed) == (3, 3, 1)
    memory = bench.simulate(mix, 2, "memory", 2, 24 * GIB, 22 * GIB)
    assert (memory.crashes, memory.completed, memory.max_in_use_gib) == (0, 2, 15.0)
    assert memory.makespan_hours == pytest.approx((mix[0].duration_s + mix[1].duration_s) / 3600, rel=1e-3)


def test_contention_slows_concurrent_trials(bench: ModuleType) -> None:
    mix = bench.Mix(2, synthetic, 22 * GIB)
    free = bench.simulate(mix, 20, "memory", 4, 24 * GIB, 22 * GIB)
    shared = bench.simulate(mix, 20, "memory", 4, 24 * GIB, 22 * GIB, contention=True)
    assert shared.makespan_hours > free.makespan_hours


def test_simulate_rejects_unknown_policy(bench: ModuleType) -> None:
    with pytest.raises(ValueError):
        bench.simulate(bench.Mix(0, synthetic, GIB * 22), 1, "greedy", 1, 24 * GIB, 22 * GIB)


def test_main_writes_json(bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert (
        bench.main(["--n-trials", "24", "--seed", "5", "--approx", "--extra-par", "6", "--out", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "memory-aware PAR=4" in printed and "fixed PAR=2" in printed
    payload = json.loads(out.read_text())
    assert payload["config"]["footprint"] == "approx_footprint"
    rows = {(r["policy"], r["par"]): r for r in payload["results"]}
    assert set(rows) == {("fixed", 4), ("fixed", 2), ("fixed", 1), ("memory", 4), ("memory", 6)}
    assert rows["memory", 4]["crashes"] == 0 and rows["memory", 4]["completed"] == 24


def test_estimator_mix_is_never_overcommitted(bench: ModuleType) -> None:
    """Shipped estimator and 24 GB profile: no crash, never past the ledger capacity, nothing lost."""
    bounds, source = bench.default_bounds("24GB")
    assert source.startswith("profile")
    mix = bench.Mix(7, bench.estimator_footprint, int(22.5 * GIB), bounds=bounds)
    memory = bench.simulate(mix, 40, "memory", 4, 24 * GIB, int(22.5 * GIB))
    assert (memory.crashes, memory.lost, memory.completed) == (0, 0, 40)
    assert memory.max_in_use_gib <= 22.5
    assert all(mix[i].footprint <= 22.5 * GIB for i in range(40))
