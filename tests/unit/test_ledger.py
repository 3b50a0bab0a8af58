"""Admission ledger in one process: the admission rule, reservations, waiting, priority, files."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpo.run.ledger import Ledger, LedgerCancelled, LedgerTimeout, LedgerTooLarge
from hpo.run.reservations import LedgerCorrupt, Reservation, admits, held_back, ledger_path_for, process_alive


def make(path: Path, capacity: int = 100, **kw: float) -> Ledger:
    kw.setdefault("poll_interval", 0.01)
    return Ledger(path / "hpo.ledger.json", "GPU-test", capacity, **kw)


def test_admits_rule() -> None:
    assert admits(0, 100, 100)
    assert not admits(1, 100, 100)
    assert admits(40, 100, 30, held_back=30)
    assert not admits(40, 100, 31, held_back=30)
    assert not admits(0, 100, -1)


def test_held_back_picks_the_oldest_due_waiter() -> None:
    waiting = [
        {"key": "young", "bytes": 5, "since": 90.0, "priority_at": 150.0},
        {"key": "old", "bytes": 70, "since": 10.0, "priority_at": 70.0},
        {"key": "older-not-due", "bytes": 30, "since": 5.0, "priority_at": 500.0},
    ]
    assert held_back(waiting, now=60.0) == 0  # nobody is due yet
    assert held_back(waiting, now=100.0) == 70 == held_back(waiting, 100.0, ticket="young")
    assert held_back(waiting, now=100.0, ticket="old") == 0  # the due waiter itself is not held back
    assert held_back(waiting, now=600.0) == 30


def test_reserve_release_in_use(tmp_path: Path) -> None:
    ledger = make(tmp_path)
    a = ledger.reserve(30, trial=7, label="bert-base")
    b = ledger.try_reserve(70)
    assert isinstance(a, Reservation) and b is not None
    assert (a.trial, a.label, a.pid, a.bytes) == (7, "bert-base", os.getpid(), 30)
    assert ledger.in_use() == 100 and {r.key for r in ledger.reservations()} == {a.key, b.key}
    assert ledger.try_reserve(1) is None  # refuses to over-commit
    ledger.release(a)
    ledger.release(a)  # idempotent
    assert ledger.in_use() == 70
    ledger.release(b)
    assert ledger.in_use() == 0
    raw = json.loads(ledger.path.read_text())
    assert raw["GPU-test"]["capacity"] == 100 and raw["GPU-test"]["reservations"] == []


def test_gpus_are_separate(tmp_path: Path) -> None:
    gpu0, gpu1 = (Ledger(tmp_path / "l.json", key, 100) for key in ("GPU-0", "GPU-1"))
    gpu0.reserve(100)
    assert gpu1.try_reserve(100) is not None
    assert gpu0.in_use() == gpu1.in_use() == 100


def test_too_large_and_negative(tmp_path: Path) -> None:
    ledger = make(tmp_path)
    with pytest.raises(LedgerTooLarge, match="memory budget"):
        ledger.reserve(101, timeout=None)
    assert ledger.try_reserve(101) is None
    with pytest.raises(ValueError):
        ledger.try_reserve(-1)
    with pytest.raises(ValueError):
        Ledger(tmp_path / "x.json", "g", -1)


def test_timeout_and_cancel_leave_no_waiter(tmp_path: Path) -> None:
    ledger = make(tmp_path)
    ledger.reserve(60)
    start = time.monotonic()
    with pytest.raises(LedgerTimeout):
        ledger.reserve(50, timeout=0.1)
    assert time.monotonic() - start < 2
    with pytest.raises(LedgerCancelled):
        ledger.reserve(50, should_stop=lambda: True)
    assert json.loads(ledger.path.read_text())["GPU-test"]["waiting"] == []
    assert ledger.in_use() == 60


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_context_manager_releases_on_any_exit(tmp_path: Path, exc: type[BaseException]) -> None:
    ledger = make(tmp_path)
    with pytest.raises(exc), ledger.reserved(40, trial=1) as res:
        assert ledger.in_use() == 40 and res.bytes == 40
        raise exc("boom")
    assert ledger.in_use() == 0


def test_reserve_waits_for_release(tmp_path: Path) -> None:
    ledger = make(tmp_path)
    held = ledger.reserve(80)
    threading.Timer(0.1, ledger.release, args=(held,)).start()
    start = time.monotonic()
    with ledger.reserved(50, timeout=5):
        assert time.monotonic() - start >= 0.09
        assert ledger.in_use() == 50


def test_starving_waiter_gets_priority(tmp_path: Path) -> None:
    ledger = make(tmp_path)
    held = ledger.reserve(60)
    got: list[Reservation] = []
    starving = make(tmp_path, priority_after=0.05)
    waiter = threading.Thread(target=lambda: got.append(starving.reserve(80, timeout=5)))
    waiter.start()
    time.sleep(0.3)  # the 80-byte waiter is now past priority_after
    assert ledger.try_reserve(30) is None  # 60 + 30 fits, but not with 80 held back for the waiter
    ledger.release(held)
    waiter.join(5)
    assert got and got[0].bytes == 80 and ledger.in_use() == 80


def test_young_waiter_does_not_block_backfill(tmp_path: Path) -> None:
    ledger = make(tmp_path, priority_after=60)
    ledger.reserve(60)
    timeouts: list[LedgerTimeout] = []

    def wait_big() -> None:
        try:
            make(tmp_path, priority_after=60).reserve(80, timeout=0.5)
        except LedgerTimeout as exc:
            timeouts.append(exc)

    waiter = threading.Thread(target=wait_big)
    waiter.start()
    time.sleep(0.1)
    assert len(json.loads(ledger.path.read_text())["GPU-test"]["waiting"]) == 1
    assert ledger.try_reserve(30) is not None  # backfill while the large waiter is young
    waiter.join(5)
    assert timeouts and ledger.in_use() == 90


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"GPU-test": 3}'])
def test_corrupt_ledger_is_an_error_naming_the_file_never_a_reset(tmp_path: Path, content: str) -> None:
    ledger = make(tmp_path)
    ledger.path.write_text(content)
    for call in (ledger.in_use, lambda: ledger.try_reserve(10), lambda: ledger.hold_process(5)):
        with pytest.raises(LedgerCorrupt) as info:
            call()
        assert str(ledger.path) in info.value.message and "corrupt" in info.value.message
    assert ledger.path.read_text() == content  # left as it was for the user to look at


def test_empty_ledger_file_is_an_empty_ledger(tmp_path: Path) -> None:
    ledger = make(tmp_path)
    ledger.path.write_text("")
    assert ledger.in_use() == 0 and ledger.try_reserve(10) is not None


def test_other_hosts_entries_hold_for_their_lease_then_are_stale(tmp_path: Path) -> None:
    now = time.time()
    entries = [
        {"key": "fresh", "pid": 1, "bytes": 30, "trial": 1, "created": now - 60, "host": "elsewhere"},
        {"key": "stale", "pid": 1, "bytes": 50, "trial": 2, "created": now - 7200, "host": "elsewhere"},
    ]
    waiting = [{"key": "w", "pid": 1, "bytes": 20, "since": now - 7200, "host": "elsewhere"}]
    ledger = make(tmp_path, foreign_lease_s=3600)
    ledger.path.write_text(
        json.dumps({"GPU-test": {"capacity": 100, "reservations": entries, "waiting": waiting}})
    )
    assert [r.key for r in ledger.reservations()] == ["fresh"]
    assert ledger.try_reserve(70) is not None  # the stale 50 bytes and the stale waiter are gone
    assert not process_alive(1, now - 10, "elsewhere", lease_s=5, now=now)
    assert process_alive(1, now - 10, "elsewhere", lease_s=60, now=now)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///x/hpo.db", Path("x/hpo.ledger.json")),
        ("sqlite:////abs/dir/study.db?timeout=30", Path("/abs/dir/study.ledger.json")),
        ("sqlite+pysqlite:///runs/a.sqlite3", Path("runs/a.ledger.json")),
        ("journal:runs/journal.log", Path("runs/journal.ledger.json")),
        ("sqlite:///:memory:", Path("out/hpo.ledger.json")),
        ("postgresql://u:p@host/db", Path("out/hpo.ledger.json")),
        ("", Path("out/hpo.ledger.json")),
    ],
)
def test_ledger_path_for(url: str, expected: Path) -> None:
    assert ledger_path_for(url, Path("out")) == expected


@settings(max_examples=40, deadline=None)
@given(
    capacity=st.integers(0, 64),
    ops=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 80), st.booleans()), max_size=25),
)
def test_property_matches_model_and_never_overcommits(
    capacity: int, ops: list[tuple[int, int, bool]]
) -> None:
    """Interleaved try_reserve/release from three ledger handles agree with a simple model of the rule."""
    with tempfile.TemporaryDirectory() as tmp:
        handles = [Ledger(Path(tmp) / "l.json", "GPU-p", capacity) for _ in range(3)]
        held: list[Reservation] = []
        for who, size, release in ops:
            if release and held:
                handles[who].release(held.pop(size % len(held)))
            else:
                expected = sum(r.bytes for r in held) + size <= capacity
                res = handles[who].try_reserve(size)
                assert (res is not None) == expected
                held += [res] if res is not None else []
            in_use = handles[(who + 1) % 3].in_use()
            assert in_use == sum(r.bytes for r in held) <= capacity


def test_process_hold_is_recorded_without_waiting_and_counts_against_trials(tmp_path: Path) -> None:
    ledger = make(tmp_path)
    trial = ledger.reserve(70, trial=1)
    hold = ledger.hold_process(40, label="cuda context")  # already on the card: recorded past capacity
    assert (hold.kind, hold.trial, hold.pid, trial.kind) == ("process", None, os.getpid(), "trial")
    assert ledger.in_use() == 110 and ledger.resident() == 40
    assert ledger.try_reserve(1) is None
    again = ledger.hold_process(30)  # one hold per process: a second call replaces the first
    assert again.key == hold.key and ledger.resident() == 30 and ledger.in_use() == 100
    ledger.release(trial)
    assert ledger.try_reserve(70) is not None and ledger.try_reserve(1) is None
    ledger.release(again)
    assert ledger.in_use() == 70


def test_trial_that_never_fits_beside_the_workers_memory_is_too_large(tmp_path: Path) -> None:
    ledger = make(tmp_path)
    ledger.hold_process(30)
    with pytest.raises(LedgerTooLarge, match="30 bytes of it held by the worker processes themselves"):
        ledger.reserve(71, timeout=5)  # fits the capacity, but never beside the context
    assert json.loads(ledger.path.read_text())["GPU-test"]["waiting"] == []
    assert ledger.try_reserve(71) is None
    assert ledger.reserve(70, timeout=1).bytes == 70


def test_usage_line_summarises_each_gpu(tmp_path: Path) -> None:
    from hpo.run.reservations import usage_line

    assert usage_line(tmp_path / "missing.json") == ""
    ledger = Ledger(tmp_path / "hpo.ledger.json", "GPU-u", 4 * 2**30)
    ledger.hold_process(2**29)
    ledger.reserve(2**30, trial=1)
    assert usage_line(ledger.path) == "ledger 1.5/4.0 GB, 1 admitted, 0 waiting"
