"""Process lifecycle: SIGINT, SIGTERM and SIGHUP stop a run like Ctrl-C; workers die with their launcher.

``timeout``, Slurm, Kubernetes and systemd stop a job with SIGTERM; a terminal sends SIGINT, a dropped ssh
session SIGHUP. Each raises :class:`Stopped` (a ``KeyboardInterrupt``, so Optuna fails the running trial and
every ``except KeyboardInterrupt`` cleans up: trials failed, the study's MLflow run ended) carrying the
signal, so the command exits with 128 + signal (130 / 143 / 129). After SIGHUP the terminal is gone: output
that went to it goes to /dev/null (a write would fail with EIO and cut the cleanup short).

On Linux a worker asks the kernel for SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``) and then
checks that its parent is still the launcher that started it: a launcher that died before the ``prctl``
call would otherwise leave the worker running as an orphan.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM) + ((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ())


class Stopped(KeyboardInterrupt):
    """The process was asked to stop by ``signum``."""

    def __init__(self, signum: int, reason: str = "") -> None:
        self.signum = signum
        self.reason = reason or f"stopped by {signal.Signals(signum).name}"
        super().__init__(self.reason)


def detach_terminal(fds: tuple[int, ...] = (1, 2)) -> list[int]:
    """Point those of ``fds`` that write to a terminal (a character device other than /dev/null) at
    /dev/null: after a hangup the terminal is gone. Files and pipes (``hpo tune > log``) are kept."""
    moved = []
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        null_dev = os.fstat(null).st_rdev
        for fd in fds:
            try:
                st = os.fstat(fd)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) and st.st_rdev != null_dev:
                os.dup2(null, fd)
                moved.append(fd)
    finally:
        os.close(null)
    return moved


def _on_stop_signal(signum: int) -> None:
    if signum == getattr(signal, "SIGHUP", None):
        detach_terminal()


def exit_code(signum: int) -> int:
    """The shell's exit status for a process ended by ``signum`` (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(signum)


def signal_of(exc: BaseException) -> int:
    """The signal behind an interrupt: a :class:`Stopped`'s, else SIGINT (a plain KeyboardInterrupt)."""
    return exc.signum if isinstance(exc, Stopped) else int(signal.SIGINT)


_pending: list[Stopped] = []  # a stop that was raised (it may have been swallowed, see check_stop)
_holding = [False]  # inside stops_held (and not stops_released): a stop waits for the next check_stop


OPTUNA_TRIAL_LOG = "optuna.study._optimize"  # where Optuna logs a failed trial, with its traceback


class _QuietStops(logging.Filter):
    """Drop Optuna's two warnings about a trial that a stop interrupted (its traceback included): the trial
    is FAIL with its ``error`` attr, and the stopped process says why in one line."""

    def __init__(self) -> None:
        super().__init__()
        self._dropped: set[str] = set()  # "Trial N failed" prefixes whose follow-up line is dropped too

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            self._dropped.add(text.split(" with ", 1)[0])
            return False
        head = text.split(" with ", 1)[0]
        if head in self._dropped and text.endswith("with value None."):
            self._dropped.discard(head)
            return False
        return True


def _unraisable(previous: Callable[[Any], object]) -> Callable[[Any], object]:
    def hook(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, Stopped):  # a swallowed stop: check_stop raises it again
            previous(unraisable)

    hook.hpo_quiet = True  # type: ignore[attr-defined]
    return hook


def quiet_stopped_trials() -> None:
    """No tracebacks for a stop: Optuna's log of the interrupted trial and a stop that landed in a finalizer
    ("Exception ignored in ...", raised again by :func:`check_stop`) are dropped."""
    logger = logging.getLogger(OPTUNA_TRIAL_LOG)
    if not any(isinstance(f, _QuietStops) for f in logger.filters):
        logger.addFilter(_QuietStops())
    if not getattr(sys.unraisablehook, "hpo_quiet", False):
        sys.unraisablehook = _unraisable(sys.unraisablehook)


def check_stop() -> None:
    """Raise the stop a signal already raised. A signal handler's exception is swallowed when it lands in a
    finalizer or a weakref callback ("Exception ignored in ..."); the training step hook and the trial loops
    call this so such a stop still takes effect at the next step."""
    if _pending:
        raise _pending[0]


@contextlib.contextmanager
def stops_held() -> Iterator[None]:
    """A stop signal inside waits for the next :func:`check_stop` (at the latest when the block ends) instead
    of raising where it lands: Optuna's creating or telling of a trial is never cut in half, which would leave
    a RUNNING trial that no process owns (it has not recorded its host and pid yet). A stop already pending
    (swallowed by a finalizer) raises before the block starts: no trial is created that the stop deadline
    could then kill half-made."""
    check_stop()
    previous, _holding[0] = _holding[0], True
    try:
        yield
    finally:
        _holding[0] = previous
    if not previous:
        check_stop()


@contextlib.contextmanager
def stops_released() -> Iterator[None]:
    """Inside :func:`stops_held`: a stop raises where it lands again (the objective, which records it)."""
    previous, _holding[0] = _holding[0], False
    try:
        yield
    finally:
        _holding[0] = previous


def stop_on_signals(reason: Callable[[int], str] | None = None, deadline_s: int = 0) -> bool:
    """The first SIGINT, SIGTERM or SIGHUP raises :class:`Stopped` (with ``reason(signum)`` when given) in the
    main thread, later ones are ignored while it cleans up; False (nothing set) outside the main thread.

    ``deadline_s`` > 0: the process ends (SIGALRM, by the kernel) that many seconds after the signal even if
    its cleanup is stuck in native code or waiting on a lock.
    """
    if threading.current_thread() is not threading.main_thread():
        return False

    def handler(signum: int, frame: FrameType | None) -> None:
        ignore_stop_signals()  # once: a second signal must not interrupt the cleanup of the first
        _on_stop_signal(signum)
        if deadline_s > 0 and hasattr(signal, "alarm"):
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(deadline_s)
        _pending.append(Stopped(signum, reason(signum) if reason is not None else ""))
        if not _holding[0]:
            raise _pending[0]

    _pending.clear()
    quiet_stopped_trials()
    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)
    return True


class StopRequest:
    """The first SIGINT/SIGTERM/SIGHUP recorded instead of raised: a loop that talks to a database checks it
    between steps, so a signal never cuts a transaction (and the SQLite lock it holds) in half."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def install(self) -> bool:
        """Record SIGINT, SIGTERM and SIGHUP from now on (main thread only; False elsewhere)."""
        if threading.current_thread() is not threading.main_thread():
            return False

        def handler(signum: int, frame: FrameType | None) -> None:
            _on_stop_signal(signum)
            if self.signum is None:
                self.signum = signum

        for sig in STOP_SIGNALS:
            signal.signal(sig, handler)
        return True

    def check(self) -> None:
        """Raise :class:`Stopped` once a signal came."""
        if self.signum is not None:
            raise Stopped(self.signum)


def ignore_stop_signals() -> None:
    """While shutting down: a second stop signal must not cut the cleanup short."""
    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


def parent_death_signal(signum: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``signum`` to this process when its parent dies (Linux); False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return int(libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0)) == 0


def parent_alive(parent_pid: int) -> bool:
    """Is ``parent_pid`` still this process's parent (False once it died and the process was re-parented)?"""
    return os.getppid() == parent_pid


def die_with_parent(parent_pid: int) -> bool:
    """Stop (SIGTERM to self) when the launcher ``parent_pid`` dies, or at once if it already has.

    Returns whether the kernel watches the parent (Linux); elsewhere only the check at start applies.
    """
    watched = parent_death_signal(signal.SIGTERM)
    if not parent_alive(parent_pid):  # it died before prctl: the kernel will not tell us
        os.kill(os.getpid(), signal.SIGTERM)
    return watched
