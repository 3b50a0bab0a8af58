"""Admission ledger across real processes: SIGKILL, zombies, PID reuse, concurrent reservers."""

from __future__ import annotations

import json
import multiprocessing as mp
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpo.run.ledger import Ledger
from tests.support import REPO


def make(path: Path, capacity: int = 100, **kw: float) -> Ledger:
    kw.setdefault("poll_interval", 0.01)
    return Ledger(path / "hpo.ledger.json", "GPU-test", capacity, **kw)


def _holder(path: Path, nbytes: int) -> subprocess.Popen[str]:
    code = (
        "import sys, time; from pathlib import Path; from hpo.run.ledger import Ledger; "
        f"Ledger(Path({str(path)!r}), 'GPU-test', 100).reserve({nbytes}, trial=3); "
        "print('reserved', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "reserved"
    return proc


def _reserver(args: tuple[str, int, int, int]) -> tuple[int, int]:
    """Worker: reserve random sizes, snapshot the in-use total under the lock, hold, release."""
    import random

    from filelock import FileLock

    path, capacity, seed, rounds = args
    rng = random.Random(seed)
    ledger = Ledger(Path(path), "GPU-test", capacity, poll_interval=0.002, priority_after=0.02)
    worst = done = 0
    for _ in range(rounds):
        with ledger.reserved(rng.randint(1, capacity * 3 // 4), timeout=30) as res:
            with FileLock(path + ".lock"):
                live = json.loads(Path(path).read_text())["GPU-test"]["reservations"]
            assert res.key in {r["key"] for r in live}
            worst = max(worst, sum(r["bytes"] for r in live))
            time.sleep(rng.uniform(0, 0.004))
            done += 1
    return worst, done


@pytest.mark.parametrize("reap", [True, False], ids=["reaped", "zombie"])
def test_sigkilled_reservation_is_reclaimed(tmp_path: Path, reap: bool) -> None:
    ledger = make(tmp_path)
    proc = _holder(ledger.path, 70)
    try:
        assert ledger.in_use() == 70 and ledger.try_reserve(40) is None  # a live holder is kept
        proc.send_signal(signal.SIGKILL)
        if reap:
            proc.wait(10)
        deadline = time.monotonic() + 10
        while ledger.in_use() and time.monotonic() < deadline:  # a zombie appears asynchronously
            time.sleep(0.02)
        assert ledger.in_use() == 0
        assert ledger.try_reserve(100) is not None
    finally:
        proc.kill()
        proc.wait(10)


def test_reclaim_dead_pid_reuse_and_other_hosts(tmp_path: Path) -> None:
    ledger = make(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "print(__import__('os').getpid())"], capture_output=True)
    young = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        now = time.time()
        entries = [
            {"key": "dead", "pid": int(dead.stdout), "bytes": 10, "trial": 1, "created": now},
            # a live process that started an hour after the reservation: its PID was reused
            {"key": "reused", "pid": young.pid, "bytes": 10, "trial": 2, "created": now - 3600},
            {"key": "live", "pid": young.pid, "bytes": 10, "trial": 3, "created": now + 1},
            # another machine's process cannot be checked from here: kept for its lease, then stale
            {"key": "remote", "pid": int(dead.stdout), "bytes": 10, "trial": 4, "created": now, "host": "x"},
            {"key": "gone", "pid": young.pid, "bytes": 10, "trial": 5, "created": now - 86400, "host": "x"},
        ]
        ledger.path.write_text(json.dumps({"GPU-test": {"capacity": 100, "reservations": entries}}))
        assert ledger.reclaim_dead() == 3
        assert sorted(r.key for r in ledger.reservations()) == ["live", "remote"]
    finally:
        young.kill()
        young.wait(10)


@pytest.mark.parametrize(
    ("start", "rounds"), [("fork", 8), pytest.param("spawn", 25, marks=pytest.mark.slow)]
)
def test_concurrent_reservers_never_overcommit(tmp_path: Path, start: str, rounds: int) -> None:
    path, capacity = str(tmp_path / "hpo.ledger.json"), 1000
    with mp.get_context(start).Pool(8) as pool:
        results = pool.map(_reserver, [(path, capacity, seed, rounds) for seed in range(8)])
    assert all(done == rounds for _, done in results)
    assert max(worst for worst, _ in results) <= capacity
    assert Ledger(Path(path), "GPU-test", capacity).in_use() == 0


def test_dead_workers_process_hold_is_reclaimed(tmp_path: Path) -> None:
    ledger = make(tmp_path)
    code = (
        "from pathlib import Path; from hpo.run.ledger import Ledger; "
        f"Ledger(Path({str(ledger.path)!r}), 'GPU-test', 100).hold_process(60)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)  # exits without releasing
    assert ledger.resident() == 0 and ledger.reserve(100, timeout=1).bytes == 100
