"""Per-GPU memory admission ledger: a worker reserves a trial's estimated peak before it loads a model.

One JSON file beside the study storage holds, per GPU key (UUID or index), the capacity, the live
reservations and the waiters. Every read-modify-write runs under a file lock and replaces the file
atomically, so the reservations never sum past the capacity whatever the number of processes.
Reservations and waiters of dead processes (SIGKILL included) are reclaimed by the next caller.

Besides trials, each worker records its fixed device memory (its CUDA context, created when it first
touches CUDA and held until it exits) with :meth:`Ledger.hold_process`: a waiting worker's context is on the
card too, so trials are admitted only into what the contexts of every live worker leave free.

Anti-starvation: a waiter that has waited ``priority_after`` seconds gets priority; while it waits,
others are admitted only if they leave room for it, so a stream of small trials cannot starve a large one.
The pure rules and the records live in ``hpo.run.reservations``.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from filelock import FileLock

from hpo.errors import HpoError
from hpo.run.reservations import (
    FOREIGN_LEASE_S,
    HOST,
    PROCESS,
    TRIAL,
    Reservation,
    admits,
    held_back,
    new_key,
    read_ledger,
    reclaim,
    reservation_from,
    write_ledger,
)
from hpo.trial.admission import AdmissionTimeout, NoRoom
from hpo.units import human

log = logging.getLogger(__name__)


class LedgerError(HpoError):
    """The admission ledger cannot serve a request."""


class LedgerTooLarge(LedgerError, NoRoom):
    """The request exceeds the GPU budget: it could never be admitted."""


class LedgerTimeout(LedgerError, AdmissionTimeout):
    """Gave up waiting for room in the GPU budget."""


class LedgerCancelled(LedgerTimeout):
    """The caller's ``should_stop`` asked to stop waiting."""


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
        foreign_lease_s: float = FOREIGN_LEASE_S,
    ) -> None:
        if capacity_bytes < 0:
            raise ValueError(f"capacity_bytes must be >= 0, got {capacity_bytes}")
        self.path = Path(path)
        self.gpu_key = str(gpu_key)
        self.capacity_bytes = int(capacity_bytes)
        self.poll_interval = poll_interval
        self.priority_after = priority_after
        self.foreign_lease_s = foreign_lease_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.path) + ".lock")

    def try_reserve(self, nbytes: int, *, trial: int | None = None, label: str = "") -> Reservation | None:
        """Reserve ``nbytes`` now, or return None when that would over-commit the GPU budget."""
        self._check(nbytes)
        return self._attempt([int(nbytes)], 1, trial, label, ticket=None)

    def try_forms(
        self, sizes: Sequence[int], eligible: int, *, trial: int | None = None, label: str = ""
    ) -> Reservation | None:
        """Reserve the first of ``sizes[:eligible]`` admitted now (no waiter is registered), else None."""
        return self._attempt([int(n) for n in sizes], eligible, trial, label, ticket=None)

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

        ``lighter``: sizes of lighter forms of the same trial (hpo.trial.elastic), in order of preference.
        Once the caller has waited ``lighter_after`` seconds (at once if ``nbytes`` can never fit), the
        first form that fits is reserved; ``Reservation.form`` says which (0 = ``nbytes``, k =
        ``lighter[k - 1]``). LedgerTooLarge at once when no form ever can: past the capacity, or past what
        the live workers' own memory (:meth:`hold_process`) leaves of it.
        """
        options = [int(nbytes), *(int(n) for n in lighter)]
        for n in options:
            self._check(n)
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        ticket, res = new_key(), None
        try:
            while True:
                eligible = len(options) if time.monotonic() - start >= lighter_after else 1
                res = self._attempt(options, eligible, trial, label, ticket=ticket)
                if res is not None:
                    return res
                if should_stop is not None and should_stop():
                    raise LedgerCancelled(f"stopped waiting for {human(nbytes)} on {self.gpu_key}")
                pause = self.poll_interval * random.uniform(0.5, 1.0)  # jitter: no lock-step polling
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise LedgerTimeout(
                            f"no room for {human(nbytes)} on {self.gpu_key} after {timeout:.1f} s",
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
            return [reservation_from(r) for r in entry["reservations"]]

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
            key, pid = ticket or new_key(), os.getpid()
            res = Reservation(key, pid, options[form], trial, now, label, HOST, TRIAL, form)
            entry["reservations"].append(asdict(res))
            entry["waiting"] = [w for w in entry["waiting"] if w["key"] != res.key]
            self._write(data)
            return res

    def _too_large(self, nbytes: int, resident: int) -> LedgerTooLarge:
        held = f", {human(resident)} of it held by the worker processes themselves" if resident else ""
        return LedgerTooLarge(
            f"trial needs {human(nbytes)} but the memory budget of {self.gpu_key} is "
            f"{human(self.capacity_bytes)}{held}",
            "shrink the trial (batch size, max length, precision, checkpointing), lower PAR or raise "
            "--gpu-memory (--host-memory for host RAM)",
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
        """Drop entries of dead processes and stale ones of other hosts; returns how many."""
        return reclaim(data, self.foreign_lease_s)

    def _entry(self, data: dict[str, Any]) -> dict[str, Any]:
        entry = data.setdefault(self.gpu_key, {})
        entry["capacity"] = self.capacity_bytes
        entry.setdefault("reservations", [])
        entry.setdefault("waiting", [])
        return entry

    def _read(self) -> dict[str, Any]:
        return read_ledger(self.path)

    def _write(self, data: dict[str, Any]) -> None:
        write_ledger(self.path, data)
