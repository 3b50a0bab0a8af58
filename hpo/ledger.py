"""Per-GPU memory admission ledger: a worker reserves a trial's estimated peak before it loads a model.

One JSON file beside the study storage holds, per GPU key (UUID or index), the capacity, the live
reservations and the waiters. Every read-modify-write runs under a file lock and replaces the file
atomically, so the reservations never sum past the capacity whatever the number of processes.
Reservations and waiters of dead processes (SIGKILL included) are reclaimed by the next caller.

Besides trials, each worker process records its own fixed device memory (its CUDA context, created when
the worker first touches CUDA and held until it exits) with :meth:`Ledger.hold_process`: a waiting worker's
context is on the card too, so trials are admitted only into what the contexts of every live worker leave
free.

Anti-starvation: a waiter that has waited ``priority_after`` seconds gets priority; while it waits,
others are admitted only if they leave room for it, so a stream of small trials cannot starve a large one.
The same pure rule, :func:`admits`, drives the scheduler benchmark.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import psutil
from filelock import FileLock

from hpo.errors import HpoError

log = logging.getLogger(__name__)

HOST = socket.gethostname()
LEDGER_NAME = "hpo.ledger.json"
# A live process whose start time is later than this after a reservation was made cannot own it (PID reuse).
PID_START_TOLERANCE_S = 2.0


class LedgerError(HpoError):
    """The admission ledger cannot serve a request."""


class LedgerTooLarge(LedgerError):
    """The request exceeds the GPU budget: it could never be admitted."""


class LedgerTimeout(LedgerError):
    """Gave up waiting for room in the GPU budget."""


class LedgerCancelled(LedgerTimeout):
    """The caller's ``should_stop`` asked to stop waiting."""


@dataclass(frozen=True)
class Reservation:
    """Bytes of one GPU held by one process; ``key`` is the reservation's unique id."""

    key: str
    pid: int
    bytes: int
    trial: int | None
    created: float
    label: str = ""
    host: str = ""
    kind: str = "trial"  # "trial" (waits for room) or "process" (a worker's CUDA context, recorded as a fact)
    form: int = 0  # which of the trial's forms was reserved (0: as sampled; see Ledger.reserve's ``lighter``)


PROCESS, TRIAL = "process", "trial"


def admits(in_use: int, capacity: int, nbytes: int, held_back: int = 0) -> bool:
    """The admission rule: admit ``nbytes`` only if it fits beside what is in use and what is held back."""
    return nbytes >= 0 and in_use + held_back + nbytes <= capacity


def held_back(waiting: Iterable[Mapping[str, Any]], now: float, ticket: str | None = None) -> int:
    """Bytes kept free for the oldest waiter whose priority time has come (0 when that waiter is ``ticket``).

    A waiter is a mapping with ``key``, ``bytes``, ``since`` and ``priority_at`` (epoch seconds).
    """
    due = [w for w in waiting if now >= float(w.get("priority_at", w["since"]))]
    if not due:
        return 0
    oldest = min(due, key=lambda w: float(w["since"]))
    return 0 if oldest["key"] == ticket else int(oldest["bytes"])


def process_alive(pid: int, created: float, host: str = "") -> bool:
    """Whether the process that reserved at ``created`` still runs (zombies and reused PIDs do not)."""
    if host and host != HOST:
        return True  # another machine's process: we cannot tell, never reclaim it
    if pid == os.getpid():
        return True
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return proc.create_time() <= created + PID_START_TOLERANCE_S
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def ledger_path_for(storage_url: str, output_dir: Path) -> Path:
    """The ledger beside a file storage (``sqlite:///x/hpo.db`` -> ``x/hpo.ledger.json``), else output_dir."""
    url = storage_url.strip()
    match = re.match(r"^sqlite(?:\+\w+)?:///([^?]*)", url)
    db = match.group(1) if match else url.removeprefix("journal:") if url.startswith("journal:") else ""
    if db and db != ":memory:":
        path = Path(db)
        return path.with_name(f"{path.stem}.ledger.json")
    return Path(output_dir) / LEDGER_NAME


class Ledger:
    """File-locked reservations of one GPU's memory, shared by every worker process of a study."""

    def __init__(
        self,
        path: Path,
        gpu_key: str,
        capacity_bytes: int,
        *,
        poll_interval: float = 0.5,
        priority_after: float = 60.0,
    ) -> None:
        if capacity_bytes < 0:
            raise ValueError(f"capacity_bytes must be >= 0, got {capacity_bytes}")
        self.path = Path(path)
        self.gpu_key = str(gpu_key)
        self.capacity_bytes = int(capacity_bytes)
        self.poll_interval = poll_interval
        self.priority_after = priority_after
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.path) + ".lock")

    def try_reserve(self, nbytes: int, *, trial: int | None = None, label: str = "") -> Reservation | None:
        """Reserve ``nbytes`` now, or return None when that would over-commit the GPU budget."""
        self._check(nbytes)
        return self._attempt([int(nbytes)], 1, trial, label, ticket=None)

    def reserve(
        self,
        nbytes: int,
        *,
        trial: int | None = None,
        label: str = "",
        timeout: float | None = None,
        should_stop: Callable[[], bool] | None = None,
        lighter: Sequence[int] = (),
        lighter_after: float = 0.0,
    ) -> Reservation:
        """Block until ``nbytes`` fits; LedgerTimeout on timeout.

        ``lighter``: sizes of lighter forms of the same trial (hpo.elastic), in order of preference. Once the
        caller has waited ``lighter_after`` seconds (at once if ``nbytes`` can never fit), the first form
        that fits is reserved; ``Reservation.form`` says which (0 = ``nbytes``, k = ``lighter[k - 1]``).
        LedgerTooLarge at once when no form ever can: past the capacity, or past what the live workers' own
        memory (:meth:`hold_process`) leaves of it.
        """
        options = [int(nbytes), *(int(n) for n in lighter)]
        for n in options:
            self._check(n)
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        ticket, res = _new_key(), None
        try:
            while True:
                eligible = len(options) if time.monotonic() - start >= lighter_after else 1
                res = self._attempt(options, eligible, trial, label, ticket=ticket)
                if res is not None:
                    return res
                if should_stop is not None and should_stop():
                    raise LedgerCancelled(f"stopped waiting for {_size(nbytes)} on {self.gpu_key}")
                pause = self.poll_interval * random.uniform(0.5, 1.0)  # jitter: no lock-step polling
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise LedgerTimeout(
                            f"no room for {_size(nbytes)} on {self.gpu_key} after {timeout:.1f} s",
                            "raise the timeout or lower PAR",
                        )
                    pause = min(pause, left)
                time.sleep(pause)
        finally:
            if res is None:  # also drops a reservation written just before an interrupt reached us
                self._forget(ticket)

    def hold_process(self, nbytes: int, *, label: str = "cuda context") -> Reservation:
        """Record this process's fixed device memory (its CUDA context); replaces an earlier hold.

        It never waits: the memory is already in use once CUDA is initialised, so it is recorded even past
        the capacity (trials then wait until enough is back). Released by :meth:`release` or when the
        process dies.
        """
        self._check(nbytes)
        with self._lock:
            data = self._read()
            self._reclaim(data)
            entry = self._entry(data)
            pid = os.getpid()
            res = Reservation(f"{pid}-process", pid, int(nbytes), None, time.time(), label, HOST, PROCESS)
            entry["reservations"] = [r for r in entry["reservations"] if r["key"] != res.key]
            entry["reservations"].append(asdict(res))
            self._write(data)
            return res

    def resident(self) -> int:
        """Bytes held by live worker processes themselves (their CUDA contexts), not by their trials."""
        return sum(r.bytes for r in self.reservations() if r.kind == PROCESS)

    def release(self, res: Reservation) -> None:
        """Give the reservation's bytes back (idempotent)."""
        self._forget(res.key)

    @contextmanager
    def reserved(self, nbytes: int, **kw: Any) -> Iterator[Reservation]:
        """``reserve`` for the duration of a block; released on any exit path."""
        res = self.reserve(nbytes, **kw)
        try:
            yield res
        finally:
            self.release(res)

    def in_use(self) -> int:
        """Bytes reserved on this GPU by live processes."""
        return sum(r.bytes for r in self.reservations())

    def reservations(self) -> list[Reservation]:
        """Live reservations on this GPU."""
        with self._lock:
            data = self._read()
            entry = self._entry(data)
            if self._reclaim(data):
                self._write(data)
            return [_reservation(r) for r in entry["reservations"]]

    def reclaim_dead(self) -> int:
        """Drop reservations and waiters of dead processes (all GPU keys); returns reservations dropped."""
        with self._lock:
            data = self._read()
            before = sum(len(e.get("reservations", [])) for e in data.values())
            if self._reclaim(data):
                self._write(data)
            return before - sum(len(e["reservations"]) for e in data.values())

    def _check(self, nbytes: int) -> None:
        if nbytes < 0:
            raise ValueError(f"cannot reserve a negative number of bytes ({nbytes})")

    def _attempt(
        self, options: list[int], eligible: int, trial: int | None, label: str, ticket: str | None
    ) -> Reservation | None:
        """Reserve the first of ``options[:eligible]`` that is admitted now (all of them when the first
        ``eligible`` can never fit); else register or update the caller's waiter (``ticket``) with the least
        it can run with, and return None."""
        with self._lock:
            data = self._read()
            changed = self._reclaim(data) > 0
            entry = self._entry(data)
            now = time.time()
            in_use = sum(int(r["bytes"]) for r in entry["reservations"])
            resident = sum(int(r["bytes"]) for r in entry["reservations"] if r.get("kind") == PROCESS)
            possible = [i for i, n in enumerate(options) if n + resident <= self.capacity_bytes]
            if not possible and ticket is not None:  # reserve(): no form ever fits beside the workers
                if changed:
                    self._write(data)
                raise self._too_large(min(options), resident)
            candidates = [i for i in possible if i < eligible] or possible
            reserve_back = held_back(entry["waiting"], now, ticket)
            form = next(
                (i for i in candidates if admits(in_use, self.capacity_bytes, options[i], reserve_back)), None
            )
            if form is None:
                if ticket is not None and candidates:
                    need = min(options[i] for i in candidates)
                    mine = [w for w in entry["waiting"] if w["key"] == ticket]
                    if not mine:
                        waiter = {
                            "key": ticket,
                            "pid": os.getpid(),
                            "host": HOST,
                            "bytes": need,
                            "since": now,
                        }
                        entry["waiting"].append(waiter | {"priority_at": now + self.priority_after})
                        changed = True
                    elif int(mine[0]["bytes"]) != need:  # lighter forms became eligible
                        mine[0]["bytes"], changed = need, True
                if changed:
                    self._write(data)
                return None
            key, pid = ticket or _new_key(), os.getpid()
            res = Reservation(key, pid, options[form], trial, now, label, HOST, TRIAL, form)
            entry["reservations"].append(asdict(res))
            entry["waiting"] = [w for w in entry["waiting"] if w["key"] != res.key]
            self._write(data)
            return res

    def _too_large(self, nbytes: int, resident: int) -> LedgerTooLarge:
        held = f", {_size(resident)} of it held by the workers' CUDA contexts" if resident else ""
        return LedgerTooLarge(
            f"trial needs {_size(nbytes)} but the GPU budget of {self.gpu_key} is "
            f"{_size(self.capacity_bytes)}{held}",
            "shrink the trial (batch size, max length, precision, checkpointing), lower PAR or raise "
            "--gpu-memory",
        )

    def _forget(self, key: str) -> None:
        with self._lock:
            data = self._read()
            entry = self._entry(data)
            before = len(entry["reservations"]) + len(entry["waiting"])
            entry["reservations"] = [r for r in entry["reservations"] if r["key"] != key]
            entry["waiting"] = [w for w in entry["waiting"] if w["key"] != key]
            if len(entry["reservations"]) + len(entry["waiting"]) != before:
                self._write(data)

    def _reclaim(self, data: dict[str, Any]) -> int:
        """Drop entries of dead processes; returns reservations dropped plus waiters dropped."""
        count = 0
        for gpu, entry in data.items():
            alive = []
            for r in entry.get("reservations", []):
                if process_alive(int(r["pid"]), float(r["created"]), str(r.get("host", ""))):
                    alive.append(r)
                else:
                    what = f"{_size(int(r['bytes']))} on {gpu} from dead process {r['pid']}"
                    log.warning("reclaimed %s (trial %s)", what, r.get("trial"))
            waiting = entry.get("waiting", [])
            live_waiting = [w for w in waiting if process_alive(int(w["pid"]), float(w["since"]), w["host"])]
            count += len(entry.get("reservations", [])) - len(alive) + len(waiting) - len(live_waiting)
            entry["reservations"], entry["waiting"] = alive, live_waiting
        return count

    def _entry(self, data: dict[str, Any]) -> dict[str, Any]:
        entry = data.setdefault(self.gpu_key, {})
        entry["capacity"] = self.capacity_bytes
        entry.setdefault("reservations", [])
        entry.setdefault("waiting", [])
        return entry

    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            # Writes are atomic: only a machine crash (no worker survives it) or a foreign edit gets here.
            log.warning("ledger %s is unreadable; starting it afresh", self.path)
            return {}
        return data

    def _write(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.path)


def usage_line(path: Path) -> str:
    """One line per GPU key of a ledger file for progress displays: reserved / capacity, trials, waiters
    ("" when there is no ledger). Reads the atomically replaced file without the lock (a snapshot)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return ""
    parts = []
    for entry in data.values() if isinstance(data, dict) else []:
        reservations = entry.get("reservations", [])
        used = sum(int(r["bytes"]) for r in reservations)
        trials = sum(1 for r in reservations if r.get("kind", TRIAL) == TRIAL)
        parts.append(
            f"ledger {used / 2**30:.1f}/{int(entry.get('capacity', 0)) / 2**30:.1f} GB, {trials} admitted, "
            f"{len(entry.get('waiting', []))} waiting"
        )
    return "; ".join(parts)


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**24 else f"{nbytes} bytes"


def _new_key() -> str:
    return f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _reservation(raw: dict[str, Any]) -> Reservation:
    names = {f.name for f in fields(Reservation)}
    return Reservation(**{k: v for k, v in raw.items() if k in names})
