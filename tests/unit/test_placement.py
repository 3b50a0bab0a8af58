"""Several GPUs on one host (hpo.run.placement): per-GPU ledgers, first-fit placement, no over-commit."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpo.config.study import StudyConfig
from hpo.run.ledger import Ledger, LedgerTimeout, LedgerTooLarge
from hpo.run.placement import MultiGpuAdmission, cuda_visible, gpu_count, home_gpu, visible_gpus

GB = 1024**3


def _ledgers(folder: Path, n: int = 2, capacity: int = 10 * GB) -> list[Ledger]:
    path = folder / "hpo.ledger.json"
    return [Ledger(path, f"simulated-gpu{i}", capacity, poll_interval=0.01) for i in range(n)]


def _admission(ledgers: list[Ledger], home: int = 0, context: int = 0) -> MultiGpuAdmission:
    placed: list[int] = []
    adm = MultiGpuAdmission(ledgers, home, context, 0, lighter_after=0.0, timeout=0.0, select=placed.append)
    adm.start()
    return adm


def test_a_trial_too_big_for_one_gpus_free_room_goes_to_the_other(tmp_path: Path) -> None:
    ledgers = _ledgers(tmp_path)
    busy = ledgers[0].try_reserve(7 * GB, trial=0)  # GPU 0 runs a trial: 3 GB free there
    assert busy is not None
    adm = _admission(ledgers)
    assert adm.placed_gpu is None  # no trial placed yet
    with adm([5 * GB], trial=1) as form:
        assert form == 0 and adm.placed == 1 and adm.placed_gpu == "simulated-gpu1"  # what the trial records
        assert ledgers[1].in_use() == 5 * GB and ledgers[0].in_use() == 7 * GB
    assert ledgers[1].in_use() == 0
    with adm([2 * GB], trial=2):  # fits at home: home first
        assert adm.placed == 0


def test_the_first_trial_on_another_gpu_reserves_the_context_it_creates_there(tmp_path: Path) -> None:
    ledgers = _ledgers(tmp_path)
    assert ledgers[0].try_reserve(9 * GB, trial=0) is not None
    adm = _admission(ledgers, context=GB // 2)  # 0.5 GB context recorded on GPU 0 at start
    with adm([3 * GB], trial=1):  # estimate includes the context: 2.5 GB of tensors
        assert adm.placed == 1 and ledgers[1].in_use() == 3 * GB  # 2.5 GB + the new context
    assert ledgers[1].resident() == GB // 2  # the context stays recorded while the worker lives
    adm.close()
    assert ledgers[0].resident() == ledgers[1].resident() == 0


def test_no_gpu_can_ever_hold_it_is_too_large_and_none_free_now_times_out(tmp_path: Path) -> None:
    ledgers = _ledgers(tmp_path)
    adm = _admission(ledgers)
    with pytest.raises(LedgerTooLarge), adm([11 * GB], trial=1):
        pass
    a, b = ledgers[0].try_reserve(8 * GB), ledgers[1].try_reserve(8 * GB)
    assert a and b
    with pytest.raises(LedgerTimeout), adm([4 * GB], trial=2):
        pass


@settings(max_examples=40, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), st.integers(1, 12), st.integers(0, 1)), min_size=1, max_size=25))
def test_property_two_gpus_are_never_over_committed_and_placement_is_first_fit(
    ops: list[tuple[bool, int, int]],
) -> None:
    """Random trials (1-12 GB on 10 GB cards, two workers with homes 0 and 1) and releases: after every step
    each GPU's reservations stay within its budget, and a trial lands on a non-home GPU only when it did not
    fit at home."""
    with tempfile.TemporaryDirectory() as folder:
        ledgers = _ledgers(Path(folder))
        workers = [_admission(ledgers, home=0), _admission(ledgers, home=1)]
        held: list[tuple[int, object]] = []
        for place, size_gb, who in ops:
            if place or not held:
                adm = workers[who]
                home_free = ledgers[adm.home].capacity_bytes - ledgers[adm.home].in_use()
                try:
                    gpu, res = adm.place([size_gb * GB], trial=len(held))
                except (LedgerTimeout, LedgerTooLarge):
                    assert all(ld.in_use() + size_gb * GB > ld.capacity_bytes for ld in ledgers)
                    continue
                if gpu != adm.home:
                    assert size_gb * GB > home_free
                held.append((gpu, res))
            else:
                gpu, res = held.pop(size_gb % len(held))
                ledgers[gpu].release(res)  # type: ignore[arg-type]
            for ld in ledgers:
                assert ld.in_use() <= ld.capacity_bytes


def test_gpu_selection_helpers() -> None:
    assert visible_gpus(None, 4) == [0, 1, 2, 3] and visible_gpus([1, 3], 4) == [1, 3]
    assert visible_gpus(None, 0) == [0]
    assert [home_gpu(s, 2) for s in range(4)] == [0, 1, 0, 1]
    cfg = StudyConfig(study="s", gpus=[0, 1])
    assert gpu_count(cfg) == 2 and gpu_count(StudyConfig(study="s")) >= 1
    assert cuda_visible(cfg, None) == "0,1" and cuda_visible(cfg, "4,5,6") == "4,5"
    assert cuda_visible(StudyConfig(study="s"), "3") is None
    with pytest.raises(ValueError):
        StudyConfig(study="s", gpus=[0, 0])
