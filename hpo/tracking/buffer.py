"""MLflow writes that never kill training: retried with backoff, else kept in a local file and replayed later.

A write is a JSON-able ``Op`` (create_run, log_batch, log_text, terminate). ``Outbox.submit`` runs it (one
retry after a backoff); when MLflow still refuses it, the op and every later op of this process go to this
process's pending file (``<host>-<pid>-<id>.jsonl``) in order, so metrics never overtake the run they belong
to. A run created while MLflow was down gets a ``pending-`` placeholder id the replay maps to the real id.
The outbox replays its own file once MLflow answers again (and at the end of the run); files left by dead
processes are replayed at the next start or by ``hpo sync-mlflow`` (``replay_folder``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

Op = dict[str, Any]
Execute = Callable[[Op], "str | None"]
PENDING_PREFIX = "pending-"
_log = logging.getLogger(__name__)


def _run_of(op: Op, ids: dict[str, str]) -> Op:
    run = op.get("run")
    return {**op, "run": ids.get(run, run)} if isinstance(run, str) else op


def _replay(
    ops: list[Op], execute: Execute, permanent: Callable[[Exception], bool], ids: dict[str, str]
) -> int:
    """Run ``ops`` in order; returns how many went through (an op MLflow rejects for good is dropped)."""
    for done, op in enumerate(ops):
        resolved = _run_of(op, ids)
        if str(resolved.get("run", "")).startswith(PENDING_PREFIX):
            continue  # its create_run was dropped: nothing to attach it to
        try:
            new_id = execute(resolved)
        except Exception as exc:
            if not permanent(exc):
                return done
            _log.warning("dropped an MLflow write MLflow rejects: %s", str(exc).splitlines()[0][:200])
            continue
        if op["op"] == "create_run" and new_id is not None:
            ids[op["ref"]] = new_id
    return len(ops)


class Outbox:
    """This process's MLflow writes: run now (one retry), else kept in order in a pending file."""

    def __init__(
        self,
        folder: Path,
        execute: Execute,
        *,
        permanent: Callable[[Exception], bool] = lambda exc: False,
        backoff_s: float = 1.0,
        hold_s: float = 30.0,
    ) -> None:
        self.folder, self.execute, self.permanent = folder, execute, permanent
        self.backoff_s, self.hold_s = backoff_s, hold_s
        self.path = folder / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self.pending: list[Op] = []
        self.ids: dict[str, str] = {}
        self._hold_until = 0.0

    def new_ref(self) -> str:
        """A placeholder run id for a create_run that may be buffered."""
        return f"{PENDING_PREFIX}{uuid.uuid4().hex}"

    def resolve(self, run_id: str | None) -> str | None:
        """The real run id of ``run_id`` once its create_run went through."""
        return self.ids.get(run_id, run_id) if run_id is not None else None

    def submit(self, op: Op) -> str | None:
        """Run ``op`` (a create_run returns the run id, a placeholder when buffered); never raises."""
        if self.pending and (time.monotonic() < self._hold_until or not self.flush()):
            return self._keep(op)
        for attempt in range(2):
            try:
                result = self.execute(_run_of(op, self.ids))
            except Exception as exc:
                if self.permanent(exc):
                    _log.warning("MLflow rejected a write: %s", str(exc).splitlines()[0][:200])
                    return None
                if attempt == 0:
                    time.sleep(self.backoff_s)
                continue
            if op["op"] == "create_run" and result is not None:
                self.ids[op["ref"]] = result
            return result
        self._hold_until = time.monotonic() + self.hold_s
        return self._keep(op)

    def _keep(self, op: Op) -> str | None:
        self.pending.append(op)
        self._write()
        return op.get("ref")

    def _write(self) -> None:
        if not self.pending:
            self.path.unlink(missing_ok=True)
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(op, default=str) + "\n" for op in self.pending))
            tmp.replace(self.path)
        except OSError as exc:  # disk full as well: keep them in memory, training goes on
            _log.warning("cannot write pending MLflow writes to %s: %s", self.path, exc)

    def flush(self) -> bool:
        """Replay this process's pending writes in order; True when none are left."""
        done = _replay(self.pending, self.execute, self.permanent, self.ids)
        self.pending = [_run_of(op, self.ids) for op in self.pending[done:]]
        self._write()
        if self.pending:
            self._hold_until = time.monotonic() + self.hold_s
        return not self.pending


def _writer_alive(path: Path) -> bool:
    host, _, rest = path.stem.rpartition("-")[0].rpartition("-")
    try:
        pid = int(rest)
    except ValueError:
        return False
    if host != socket.gethostname():
        return True  # another host's process: only that host can tell
    return pid == os.getpid() or psutil.pid_exists(pid)  # this process flushes its own file


def pending_files(folder: Path) -> list[Path]:
    """Pending files left in ``folder`` (any writer)."""
    return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []


def replay_folder(
    folder: Path, execute: Execute, permanent: Callable[[Exception], bool] = lambda exc: False
) -> tuple[int, int]:
    """Replay the files of processes that are gone (this host); returns (ops replayed, ops still pending)."""
    replayed = left = 0
    for path in pending_files(folder):
        if _writer_alive(path):
            continue
        with contextlib.suppress(OSError, ValueError):
            ops = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            ids: dict[str, str] = {}
            done = _replay(ops, execute, permanent, ids)
            rest = [_run_of(op, ids) for op in ops[done:]]
            replayed, left = replayed + done, left + len(rest)
            if rest:
                path.write_text("".join(json.dumps(op, default=str) + "\n" for op in rest))
            else:
                path.unlink(missing_ok=True)
    return replayed, left
