"""What the memory ledger holds and the pure rules it applies: reservations, the admission rule, owner
liveness (dead and foreign processes), where the ledger file lives and a one-line usage summary.

The admission rule (:func:`admits` and :func:`held_back`) is shared with the scheduler simulation
(``hpo.bench``), so the benchmark schedules exactly as workers do.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import psutil

from hpo.errors import HpoError
from hpo.units import GIB

log = logging.getLogger(__name__)

HOST = socket.gethostname()
LEDGER_NAME = "hpo.ledger.json"
# A live process whose start time is later than this after a reservation was made cannot own it (PID reuse).
PID_START_TOLERANCE_S = 2.0
# Another host's entries cannot be checked for liveness: they count for this long after they were made, then
# are stale (a GPU key belongs to one machine: they come from a renamed host or a shared simulated key).
FOREIGN_LEASE_S = 6 * 3600.0


class LedgerCorrupt(HpoError):
    """The ledger file cannot be read: never reset silently (it holds live reservations)."""


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


def process_alive(
    pid: int, created: float, host: str = "", lease_s: float = FOREIGN_LEASE_S, now: float | None = None
) -> bool:
    """Whether the process that reserved at ``created`` still runs (zombies and reused PIDs do not); another
    host's process is presumed alive for ``lease_s`` seconds after ``created``, stale afterwards."""
    if host and host != HOST:
        return (time.time() if now is None else now) - created < lease_s
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


def read_ledger(path: Path) -> dict[str, Any]:
    """The ledger file's content ({} when absent)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        data, why = None, f"not JSON ({exc.msg} at line {exc.lineno})"
    else:
        why = "not a JSON object of GPU keys"
    if not isinstance(data, dict) or not all(isinstance(e, dict) for e in data.values()):
        # Writes are atomic: only a machine crash or a foreign edit gets here. Resetting would drop live
        # reservations and over-commit the card, so stop and say which file.
        raise LedgerCorrupt(
            f"memory ledger {path} is corrupt: {why}",
            f"stop every worker of this study, then delete {path} (or restore it) and start again",
        )
    return data


def reclaim(data: dict[str, Any], lease_s: float = FOREIGN_LEASE_S) -> int:
    """Drop entries of dead processes (and stale ones of other hosts) in place; returns how many."""
    count = 0
    for gpu, entry in data.items():
        alive = []
        for r in entry.get("reservations", []):
            if process_alive(int(r["pid"]), float(r["created"]), str(r.get("host", "")), lease_s):
                alive.append(r)
            else:
                what = f"{int(r['bytes']) / GIB:.2f} GiB on {gpu} from process {r['pid']}@{r.get('host', '')}"
                log.warning("reclaimed %s (trial %s): dead or stale", what, r.get("trial"))
        waiting = entry.get("waiting", [])
        live = [w for w in waiting if process_alive(int(w["pid"]), float(w["since"]), w["host"], lease_s)]
        count += len(entry.get("reservations", [])) - len(alive) + len(waiting) - len(live)
        entry["reservations"], entry["waiting"] = alive, live
    return count


def write_ledger(path: Path, data: dict[str, Any]) -> None:
    """Replace the ledger file atomically (readers never see a partial write)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def usage_line(path: Path) -> str:
    """One line per GPU key of a ledger file for progress displays: reserved / capacity, trials, waiters
    ("" when there is no ledger). Reads the atomically replaced file without the lock (a snapshot)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return ""
    parts = []
    entries = (
        sorted(data.items(), key=lambda kv: kv[0].startswith("host-ram")) if isinstance(data, dict) else []
    )
    for key, entry in entries:  # GPU keys first, then host RAM (hpo.run.host)
        reservations = entry.get("reservations", [])
        used = sum(int(r["bytes"]) for r in reservations)
        trials = sum(1 for r in reservations if r.get("kind", TRIAL) == TRIAL)
        parts.append(
            f"{'host RAM' if key.startswith('host-ram') else 'ledger'} {used / GIB:.1f}/"
            f"{int(entry.get('capacity', 0)) / GIB:.1f} GB, {trials} admitted, "
            f"{len(entry.get('waiting', []))} waiting"
        )
    return "; ".join(parts)


def new_key() -> str:
    """A reservation or waiter key unique across processes."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


def reservation_from(raw: dict[str, Any]) -> Reservation:
    """A Reservation from its JSON form (unknown keys ignored)."""
    names = {f.name for f in fields(Reservation)}
    return Reservation(**{k: v for k, v in raw.items() if k in names})
