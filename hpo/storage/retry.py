"""Storage outages are waited out: every call to an RDB storage retries with backoff for ``--storage-retry``.

A database restart (``pg_ctl restart -m fast``), a failover or a network cut makes SQLAlchemy raise an
``OperationalError`` (Optuna wraps it in a ``StorageInternalError``) on every call until the server is back.
:class:`RetryingRDBStorage` is Optuna's ``RDBStorage`` whose calls go through :func:`call`: a transient
error (:func:`is_transient`) is retried with exponential backoff (0.5 s doubling to 10 s, jittered) for as
long as the process's outage lasts, up to the configured limit (:func:`configure`, default 10 minutes);
then :class:`StorageDown` (one `error:` line; the CLI exits 75) and every later call fails at once. Opening a
storage fails at once (a wrong URL or a server that is down at start is an input error), unless the process
was told that the storage worked before (a worker of a running launcher: ``assume_up``).

The launcher, the workers (their trial loop and Optuna's heartbeat thread) and the serial run share it: the
storage object is the one place every read and write passes.
"""

from __future__ import annotations

import contextlib
import random
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import optuna
from optuna.storages import RDBStorage

from hpo.errors import StorageDown
from hpo.storage.dbcheck import is_disk_full
from hpo.units import human_duration

T = TypeVar("T")
DEFAULT_LIMIT_S = 600.0
FIRST_DELAY_S, MAX_DELAY_S = 0.5, 10.0
# connection-level failures (psycopg / libpq, PyMySQL, sqlite3), lower case
_TRANSIENT = re.compile(
    r"connection refused|could not connect|connection failed|server closed the connection|terminating "
    r"connection|the database system is|connection (is|already) closed|no connection to the server|"
    r"connection timed out|timeout expired|ssl syscall|connection reset|broken pipe|lost connection|"
    r"server has gone away|can't connect|consuming input failed|database is locked|cannot connect now"
)
_SQLSTATES = ("08", "57P01", "57P02", "57P03", "40001", "40P01")  # connection, shutdown, retryable conflicts


def is_transient(exc: BaseException) -> bool:
    """True for a failure a database restart or network cut causes (worth retrying), not for bad data, a
    missing table or a full disk. Looks through Optuna's StorageInternalError to SQLAlchemy's error."""
    import sqlalchemy.exc as sa_exc

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if is_disk_full(current):
            return False
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, (sa_exc.DisconnectionError, sa_exc.TimeoutError)):
            return True
        if isinstance(current, (sa_exc.OperationalError, sa_exc.InterfaceError)):
            orig = current.orig
            state = str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "")
            if state and state.startswith(_SQLSTATES):
                return True
            return bool(_TRANSIENT.search(str(current).lower()))
        current = current.__cause__ or current.__context__
    return False


@dataclass
class Outage:
    """This process's view of the storage: limits, whether it ever answered, the outage under way."""

    limit_s: float = DEFAULT_LIMIT_S
    assume_up: bool = False  # the storage worked before this process started (a launcher's worker)
    down_since: float | None = None
    recovered_at: float | None = None  # when the last outage ended (heartbeats are stale for a while)
    gave_up: StorageDown | None = None
    first_delay_s: float = FIRST_DELAY_S
    max_delay_s: float = MAX_DELAY_S
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    say: Callable[[str], None] = field(default=lambda text: print(text, file=sys.stderr, flush=True))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self, fn: Callable[[], T], what: str = "storage", retry: bool = True) -> T:
        """``fn()``, retried while it fails with a transient error and the outage is within the limit
        (``retry`` False: raised at once)."""
        if self.gave_up is not None:
            raise StorageDown(self.gave_up.message, self.gave_up.fix)
        delay = self.first_delay_s
        while True:
            try:
                result = fn()
            except Exception as exc:
                if not retry or not is_transient(exc):
                    raise
                left = self._failed(exc, what)
                pause = min(delay * (0.75 + random.random() / 2), self.max_delay_s, left)
                self.sleep(max(0.0, pause))
                delay = min(delay * 2, self.max_delay_s)
                continue
            self._recovered()
            return result

    def _failed(self, exc: Exception, what: str) -> float:
        """Seconds the outage may still last; raises StorageDown when none are left."""
        now = self.clock()
        with self.lock:
            if self.down_since is None:
                self.down_since = now
                limit = human_duration(self.limit_s)
                self.say(f"[storage] {what} unreachable ({first_line(exc)}); retrying for up to {limit}")
            left = self.down_since + self.limit_s - now
            if left <= 0 and self.gave_up is None:
                self.gave_up = stopped_error(what, now - self.down_since, first_line(exc))
            gave_up = self.gave_up
        if gave_up is not None:
            raise StorageDown(gave_up.message, gave_up.fix) from exc
        return left

    def _recovered(self) -> None:
        if self.down_since is None:
            return
        with self.lock:
            if self.down_since is not None:
                self.say(f"[storage] back after {human_duration(self.clock() - self.down_since)}")
                self.down_since, self.recovered_at = None, self.clock()

    def recently_recovered(self, within_s: float) -> bool:
        """True while ``within_s`` seconds have not passed since an outage ended."""
        return self.recovered_at is not None and self.clock() - self.recovered_at < within_s


OUTAGE = Outage()  # one per process: the launcher, a worker, a serial run


def stopped_error(who: str, seconds: float, detail: str = "") -> StorageDown:
    """The one `error:` line of a run whose storage (as ``who`` saw it) stayed unreachable ``seconds``."""
    where = f"{who}: {detail}" if detail else who
    return StorageDown(
        f"the storage stayed unreachable for {human_duration(seconds)} ({where}); "
        "the run stopped, finished trials are kept",
        "check the database server, then rerun the same command to resume (--storage-retry sets how long "
        "a run waits for it)",
    )


def down_error() -> StorageDown | None:
    """The StorageDown this process gave up with; None while its storage calls still retry or succeed."""
    return OUTAGE.gave_up


def configure(limit_s: float, *, assume_up: bool = False) -> None:
    """Set this process's ``--storage-retry`` limit; ``assume_up``: opening the storage retries too."""
    OUTAGE.limit_s, OUTAGE.assume_up = float(limit_s), assume_up
    OUTAGE.gave_up = None


def first_line(exc: BaseException) -> str:
    """The most telling first line: the driver's own error under Optuna's generic StorageInternalError."""
    wrapped = isinstance(exc, optuna.exceptions.StorageInternalError) and exc.__cause__ is not None
    cause = exc.__cause__ if wrapped and exc.__cause__ is not None else exc
    text = str(getattr(cause, "orig", None) or cause).strip()
    return (text.splitlines() or [type(cause).__name__])[0][:200]


_local = threading.local()


def _guarded(storage: RetryingRDBStorage, name: str, fn: Callable[[], T]) -> T:
    """``fn()`` retried by ``storage.outage``, unless a storage method calling another is already inside it
    (only the outer call retries: no retries of retries)."""
    if getattr(_local, "inside", False):
        return fn()

    def once() -> T:
        _local.inside = True
        try:
            return fn()
        finally:
            _local.inside = False

    return storage.outage.call(once, name)


def _retried(name: str) -> Callable[..., Any]:
    parent = getattr(RDBStorage, name)

    def method(self: RetryingRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return _guarded(self, name, lambda: parent(self, *args, **kwargs))

    method.__name__ = name
    return method


class RetryingRDBStorage(RDBStorage):
    """Optuna's RDBStorage whose reads and writes wait out an outage (see the module docstring)."""

    outage: Outage = OUTAGE

    def set_trial_state_values(self, trial_id: int, state: Any, values: Any = None) -> bool:
        tries = [0]

        def once() -> bool:
            tries[0] += 1
            try:
                return bool(RDBStorage.set_trial_state_values(self, trial_id, state, values))
            except optuna.exceptions.UpdateFinishedTrialError:
                # a retried write whose first try committed (only the answer was lost): done already
                if tries[0] > 1 and RDBStorage.get_trial(self, trial_id).state == state:
                    return True
                raise

        return _guarded(self, "set_trial_state_values", once)

    def record_heartbeat(self, trial_id: int) -> None:
        # Optuna's heartbeat thread: once the run gave up, the trial loop reports it (a dying thread would
        # only print a traceback)
        if self.outage.gave_up is None:
            with contextlib.suppress(StorageDown):
                _guarded(self, "record_heartbeat", lambda: RDBStorage.record_heartbeat(self, trial_id))

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        # right after an outage every heartbeat is old: give live trials a grace period to beat again
        if self.outage.recently_recovered(float(self.grace_period or 2 * (self.heartbeat_interval or 60))):
            return []
        return _guarded(self, "_get_stale_trial_ids", lambda: RDBStorage._get_stale_trial_ids(self, study_id))


# every other call Optuna (and its cache, optuna.storages._CachedStorage) makes on an RDBStorage
for _name in (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions", "get_study_user_attrs",
    "get_study_system_attrs", "get_all_studies", "create_new_trial", "_create_new_trial", "set_trial_param",
    "_set_trial_param", "get_trial_param", "set_trial_intermediate_value", "set_trial_user_attr",
    "set_trial_system_attr", "get_trial_id_from_study_id_trial_number", "get_trial", "get_all_trials",
    "_get_trials", "get_best_trial", "_get_best_trial_id", "get_trial_user_attrs", "get_trial_system_attrs",
):  # fmt: skip
    setattr(RetryingRDBStorage, _name, _retried(_name))


def open_rdb(url: str, **kwargs: Any) -> RetryingRDBStorage:
    """A RetryingRDBStorage for ``url`` (opening it waits out an outage too when the storage is known up)."""
    return OUTAGE.call(lambda: RetryingRDBStorage(url, **kwargs), "opening the storage", OUTAGE.assume_up)
