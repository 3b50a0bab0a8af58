"""Scheduler benchmark: simulation invariants, the comparison on a small mix, the script's main."""

from __future__ import annotations

import json
import runpy
from collections.abc import Callable
from pathlib import Path

import pytest

from hpo.bench import DEFAULT_CONFIG
from hpo.bench.error import error_model, measured_contexts, published_ratios, true_context_bytes
from hpo.bench.mix import Mix, estimator_footprint, space_draw
from hpo.bench.simulate import Result, ceiling, run_all, simulate
from hpo.errors import ConfigError
from hpo.memory.budget import CUDA_CONTEXT

GIB = 2**30
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_scheduler.py"


@pytest.fixture(scope="module")
def main() -> Callable[..., int]:
    """The script's main (scripts/ is no package): its module namespace, run without ``__main__``."""
    return runpy.run_path(str(SCRIPT))["main"]  # type: ignore[no-any-return]


def draw_from(seed: int):  # type: ignore[no-untyped-def]
    """Uniform configs of two base and one large encoder (no search space needed)."""
    import random

    from hpo.config.study import TrialConfig

    rng = random.Random(seed)

    def draw() -> TrialConfig:
        return TrialConfig(
            model=rng.choice(["bert-base-uncased", "roberta-base", "roberta-large"]),
            learning_rate=1e-4,
            batch_size=rng.choice([8, 16, 32]),
            max_length=rng.choice([128, 256]),
            precision=rng.choice(["fp32", "bf16"]),
            grad_checkpointing=rng.random() < 0.5,
        )

    return draw


def synthetic(cfg) -> int:  # type: ignore[no-untyped-def]
    """Footprints between ~2 and ~14 GiB, growing with model size, batch and length (no estimator needed)."""
    base = 5.0 if "large" in cfg.model else 1.5
    tokens = cfg.batch_size * cfg.max_length / (2048 if cfg.grad_checkpointing else 1024)
    return int((base + min(tokens * (1.0 if cfg.precision == "fp32" else 0.6), 9.0)) * GIB)


def mix_of(seed: int, footprint=synthetic, limit: int = 22 * GIB):  # type: ignore[no-untyped-def]
    return Mix(seed, footprint, limit, draw_from(seed))


def test_memory_aware_never_crashes_and_beats_fixed_par2() -> None:
    """On a synthetic 2-12 GiB mix (packing matters, no estimator needed); full-size numbers: the script.
    With an exact estimate and contexts (no error) the memory-aware rows cannot lose a trial: that is by
    construction here, and the tests below add the estimator's and the context's errors."""
    card, capacity = 24 * GIB, int(22.5 * GIB)
    mix = mix_of(1, limit=capacity - 3 * CUDA_CONTEXT)
    results = {(r.policy, r.par): r for r in run_all(mix, 60, 4, card, capacity)}
    memory, fixed2, fixed4 = results["memory", 4], results["fixed", 2], results["fixed", 4]
    elastic = results["memory-elastic", 4]
    for r in (memory, elastic):
        assert r.completed + r.own_ooms == 60
        assert r.max_in_use_gib <= 22.5
    assert memory.trials_per_hour >= fixed2.trials_per_hour
    assert elastic.trials_per_hour >= memory.trials_per_hour and elastic.mean_wait_min <= memory.mean_wait_min
    # no zero-OOM schedule beats its ceiling; lighter forms raise the ceiling
    assert memory.trials_per_hour <= ceiling(mix, 60, 4, capacity)
    assert elastic.trials_per_hour <= ceiling(mix, 60, 4, capacity, elastic=True)
    assert fixed4.crashes > 0 and fixed4.lost_gpu_hours > 0
    assert results["fixed", 1].crashes == 0 and results["fixed", 1].completed == 60


def test_an_under_estimated_trial_ooms_in_its_own_cap_and_neighbours_run_on() -> None:
    """True footprint = estimate x a lognormal error (sigma 0.15): the OOM counter is non-zero, every OOM is
    the trial's own (pruned, its work lost), no neighbour crashes; fixed PAR crashes on the true sizes.
    No neighbour crash is by construction here (contexts exact, nothing outside the caps): the caps' margins
    add up to at most the headroom. test_a_memory_aware_schedule_can_crash_its_neighbours drops that."""
    card, capacity = 24 * GIB, int(22.5 * GIB)
    error, _ = error_model("lognormal:0.15")
    mix = Mix(1, synthetic, capacity - 3 * CUDA_CONTEXT, draw_from(1), error)
    assert any(t.forms[0].real > t.footprint for t in mix.trials_upto(60))
    results = {(r.policy, r.par): r for r in run_all(mix, 60, 4, card, capacity)}
    for key in (("memory", 4), ("memory-elastic", 4)):
        r = results[key]
        assert r.own_ooms > 0 and r.crashes == 0, key
        assert r.lost == r.own_ooms and r.completed + r.own_ooms == 60 and r.lost_gpu_hours > 0
    assert results["fixed", 4].crashes > 0 and results["fixed", 4].own_ooms == 0
    # a generous cap margin absorbs the same errors: the counter moves with the policy, not by definition
    roomy = simulate(mix, 60, "memory", 4, card, capacity, cap_margin_bytes=8 * GIB)
    assert roomy.own_ooms < results["memory", 4].own_ooms


def test_published_error_is_measured_against_the_table() -> None:
    table = Path(__file__).resolve().parents[1] / "data" / "published_peaks.csv"
    ratios = published_ratios(table)
    assert len(ratios) == 9 and all(0.9 < r < 1.1 for r in ratios) and max(ratios) > 1.0
    error, text = error_model("published", table)
    assert error is not None and "9 published rows" in text
    with pytest.raises(ConfigError):
        error_model("gaussian")


def test_simulation_is_seeded() -> None:
    def run(seed: int) -> list[Result]:
        mix = mix_of(seed)
        return run_all(mix, 30, 4, 24 * GIB, 22 * GIB, contention=True)

    assert run(3) == run(3) != run(4)


def test_crash_accounting_on_two_big_trials() -> None:
    mix = mix_of(0, footprint=lambda cfg: 15 * GIB)
    fixed = simulate(mix, 2, "fixed", 2, 24 * GIB, 22 * GIB, crash_kills="all", lost="drop")
    assert (fixed.crashes, fixed.lost, fixed.completed) == (1, 2, 0)
    # the newest attempt dies and reruns beside the same neighbour until it runs out of attempts
    retried = simulate(mix, 2, "fixed", 2, 24 * GIB, 22 * GIB, crash_kills="newest", max_attempts=3)
    assert (retried.crashes, retried.lost, retried.completed) == (3, 3, 1)
    memory = simulate(mix, 2, "memory", 2, 24 * GIB, 22 * GIB)
    # one trial at a time, beside the other (waiting) worker's CUDA context
    assert (memory.crashes, memory.completed, memory.max_in_use_gib) == (0, 2, 15.5)
    assert memory.makespan_hours == pytest.approx((mix[0].duration_s + mix[1].duration_s) / 3600, rel=1e-3)


def test_contention_slows_concurrent_trials() -> None:
    mix = mix_of(2)
    free = simulate(mix, 20, "memory", 4, 24 * GIB, 22 * GIB)
    shared = simulate(mix, 20, "memory", 4, 24 * GIB, 22 * GIB, contention=True)
    assert shared.makespan_hours > free.makespan_hours


def test_simulate_rejects_unknown_policy() -> None:
    with pytest.raises(ValueError):
        simulate(mix_of(0), 1, "greedy", 1, 24 * GIB, 22 * GIB)


def test_fixed_par_runs_unfit_configs_and_loses_them() -> None:
    mix = mix_of(5, limit=8 * GIB)  # every synthetic config over 8 GiB cannot run
    mix.trials_upto(20)
    unfit = sum(mix.unfit_before[:20])
    assert unfit > 0 and unfit == mix.pruned
    alone = simulate(mix, 20, "fixed", 1, 24 * GIB, 22 * GIB)
    assert (alone.crashes, alone.lost, alone.completed) == (unfit, unfit, 20)
    skipped = simulate(mix, 20, "fixed", 1, 24 * GIB, 22 * GIB, unfit="skip")
    assert (skipped.crashes, skipped.lost) == (0, 0) and skipped.makespan_hours < alone.makespan_hours
    hpo = simulate(mix, 20, "memory", 1, 24 * GIB, 22 * GIB)  # pruned by estimate: free
    assert (hpo.crashes, hpo.lost, hpo.completed) == (0, 0, 20)


def test_main_writes_json(
    main: Callable[..., int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    argv = ["--n-trials", "24", "--seed", "5", "--repeat", "2", "--extra-par", "6", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "memory-aware+elastic PAR=4" in printed and "fixed PAR=2" in printed and "ceiling PAR=4" in printed
    assert "seeds 5..6, trials/h vs fixed PAR=2" in printed and "criteria-24gb.yaml" in printed
    payload = json.loads(out.read_text())
    assert [run["seed"] for run in payload["runs"]] == [5, 6]
    rows = {(r["policy"], r["par"]): r for r in payload["runs"][0]["results"]}
    assert set(rows) == {
        ("fixed", 4),
        ("fixed", 2),
        ("fixed", 1),
        ("memory", 4),
        ("memory-elastic", 4),
        ("memory-elastic", 6),
    }
    elastic = rows["memory-elastic", 4]  # true footprints: it may lose attempts to crashes (retried)
    assert elastic["completed"] + elastic["own_ooms"] <= 24 and elastic["lost"] >= elastic["own_ooms"]
    assert (elastic["lost"] > 0) == (elastic["lost_gpu_hours"] > 0)
    assert "true footprint = estimate x error: measured/estimated of 67 held-out" in printed
    assert "true CUDA context 770 MiB" in printed and "lost GPU-h" in printed
    assert rows["fixed", 2]["vs_base"] == 1.0


def test_space_mix_is_the_tools_and_never_overcommitted() -> None:
    """The shipped 24 GB study, sampled by hpo.space, sized by the estimator: no crash, within capacity."""
    from hpo.config.study import load_config

    capacity = int(22.5 * GIB)
    draw = space_draw(DEFAULT_CONFIG, 7)
    table = Path(__file__).resolve().parents[1] / "data" / "published_peaks.csv"
    mix = Mix(7, estimator_footprint, capacity - 3 * CUDA_CONTEXT, draw, error_model("published", table)[0])
    trials = mix.trials_upto(40)
    models = set(load_config(DEFAULT_CONFIG).models)
    assert {t.config.model for t in trials} <= models and len({t.config.model for t in trials}) > 2
    assert all(t.footprint <= capacity - 3 * CUDA_CONTEXT for t in trials)
    assert all(f.footprint < t.footprint for t in trials for f in t.forms[1:])
    for elastic in (False, True):
        memory = simulate(mix, 40, "memory", 4, 24 * GIB, capacity, elastic=elastic)
        assert memory.crashes == 0 and memory.completed + memory.own_ooms == 40
        # true footprints may use the caps' margins beyond the ledger's capacity, never beyond the card
        assert memory.max_in_use_gib <= 24


def test_two_simulated_gpus_admit_per_card_and_run_more_trials_per_hour() -> None:
    """`hpo tune --gpus 0,1` in the simulation: PAR workers per card, each card's ledger admits on its own
    (the total in use stays within two capacities, no OOM kills a neighbour), and the same mix runs faster."""
    card, capacity = 24 * GIB, int(22.5 * GIB)
    mix = mix_of(2, limit=capacity - 3 * CUDA_CONTEXT)
    one = simulate(mix, 60, "memory", 4, card, capacity)
    two = simulate(mix, 60, "memory", 4, card, capacity, gpus=2)
    assert two.gpus == 2 and two.crashes == 0 and two.completed + two.own_ooms == 60
    assert two.max_in_use_gib <= 2 * 22.5
    assert two.trials_per_hour > 1.5 * one.trials_per_hour
    with pytest.raises(ValueError):
        simulate(mix, 10, "fixed", 4, card, capacity, gpus=2)


def test_a_memory_aware_schedule_can_crash_its_neighbours() -> None:
    """On true footprints the memory-aware schedule is not crash-free by definition: a real CUDA context
    larger than the one the ledger counts (eager module loading: 1343 MiB measured on the V100,
    tests/data/published_peaks.csv, vs the 24 GB profile's 512) or memory no cap limits fills the card past
    what the ledger admits, and the allocating attempt dies (lost, retried). The H200's 770 MiB does not
    crash this mix (the caps' margins are rarely all used at once)."""
    card, capacity = 24 * GIB, int(22.5 * GIB)
    error, _ = error_model("lognormal:0.15")
    mix = Mix(1, synthetic, capacity - 3 * CUDA_CONTEXT, draw_from(1), error)
    exact = simulate(mix, 60, "memory", 4, card, capacity)
    h200 = simulate(mix, 60, "memory", 4, card, capacity, true_context_bytes=true_context_bytes(770))
    real = simulate(mix, 60, "memory", 4, card, capacity, true_context_bytes=true_context_bytes(1343))
    extras = simulate(mix, 60, "memory", 4, card, capacity, outside_cap_bytes=512 * 2**20)
    assert exact.crashes == h200.crashes == 0
    for r in (real, extras):
        assert r.crashes > 0 and r.lost > r.own_ooms and r.lost_gpu_hours > exact.lost_gpu_hours
        assert r.max_in_use_gib <= 24
    # the counter moves with the model: a ledger that counts the real context crashes less
    counted = simulate(
        mix, 60, "memory", 4, card, capacity, context_bytes=1343 * 2**20, true_context_bytes=1343 * 2**20
    )
    assert counted.crashes < real.crashes


def test_loso_error_draws_held_out_ratios_and_the_context_is_measured() -> None:
    error, text = error_model("loso")
    assert error is not None and "67 held-out (leave-one-source-out) rows" in text
    contexts = measured_contexts()
    assert len(contexts) == 82 and 740 * 2**20 <= min(contexts) <= max(contexts) <= 780 * 2**20
    assert true_context_bytes() == sorted(contexts)[41] or 740 * 2**20 <= true_context_bytes() <= 780 * 2**20
    assert true_context_bytes(512) == 512 * 2**20
