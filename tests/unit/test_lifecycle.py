"""SIGINT/SIGTERM stop a run like Ctrl-C; a worker dies with its launcher (signals to this process only)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Iterator

import pytest

from hpo.commands.exit_codes import INTERRUPTED, TERMINATED, for_signal
from hpo.lifecycle import (
    PR_SET_PDEATHSIG,
    Stopped,
    StopRequest,
    die_with_parent,
    exit_code,
    parent_alive,
    parent_death_signal,
    signal_of,
    stop_on_signals,
)

PR_GET_PDEATHSIG = 2
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux only")


@pytest.fixture
def handlers() -> Iterator[None]:
    """Restore this process's SIGINT/SIGTERM handlers after the test."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def _death_signal() -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    value = ctypes.c_int(-1)
    assert libc.prctl(PR_GET_PDEATHSIG, ctypes.byref(value), 0, 0, 0) == 0
    return value.value


def test_stopped_is_a_keyboard_interrupt_with_its_signal() -> None:
    stop = Stopped(signal.SIGTERM)
    assert isinstance(stop, KeyboardInterrupt) and stop.signum == signal.SIGTERM
    assert str(stop) == "stopped by SIGTERM" and signal_of(stop) == signal.SIGTERM
    assert signal_of(KeyboardInterrupt()) == signal.SIGINT
    assert str(Stopped(signal.SIGTERM, "launcher (pid 7) died")) == "launcher (pid 7) died"


def test_exit_codes_follow_the_shell() -> None:
    assert exit_code(signal.SIGINT) == INTERRUPTED == for_signal(signal.SIGINT) == 130
    assert exit_code(signal.SIGTERM) == TERMINATED == for_signal(signal.SIGTERM) == 143
    assert for_signal(None) == INTERRUPTED


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_raises_stopped_once(handlers: None, sig: signal.Signals) -> None:
    assert stop_on_signals(lambda signum: f"why {signum}")
    with pytest.raises(Stopped) as info:
        os.kill(os.getpid(), sig)
    assert info.value.signum == sig and str(info.value) == f"why {int(sig)}"
    # a second signal while the first is cleaned up is ignored
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN == signal.getsignal(signal.SIGINT)
    os.kill(os.getpid(), signal.SIGTERM)


@linux_only
def test_parent_death_signal_is_set_in_the_kernel() -> None:
    try:
        assert parent_death_signal(signal.SIGTERM)
        assert _death_signal() == signal.SIGTERM
    finally:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0)
    assert _death_signal() == 0


@linux_only
def test_a_worker_whose_launcher_is_already_gone_stops_at_once(handlers: None) -> None:
    stop_on_signals(lambda signum: "launcher gone")
    assert parent_alive(os.getppid()) and not parent_alive(os.getppid() + 100_000)
    try:
        with pytest.raises(Stopped, match="launcher gone"):
            die_with_parent(os.getppid() + 100_000)  # not our parent: as if it died before prctl
    finally:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0)
    stop_on_signals()
    assert die_with_parent(os.getppid())  # the real parent: nothing happens
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0)


@pytest.mark.skipif(not hasattr(signal, "alarm"), reason="no SIGALRM")
def test_a_stopped_process_gets_a_hard_deadline(handlers: None) -> None:
    saved = signal.getsignal(signal.SIGALRM)
    assert stop_on_signals(deadline_s=30)
    try:
        with pytest.raises(Stopped):
            os.kill(os.getpid(), signal.SIGTERM)
        assert 0 < signal.alarm(0) <= 30  # armed (and cancelled here)
        assert signal.getsignal(signal.SIGALRM) == signal.SIG_DFL  # the kernel ends the process
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, saved)


def test_a_stop_request_records_the_signal_until_checked(handlers: None) -> None:
    request = StopRequest()
    assert request.install()
    request.check()  # nothing yet
    os.kill(os.getpid(), signal.SIGTERM)  # no exception here: only recorded
    os.kill(os.getpid(), signal.SIGINT)  # the first one counts
    assert request.signum == signal.SIGTERM
    with pytest.raises(Stopped) as info:
        request.check()
    assert info.value.signum == signal.SIGTERM


def test_a_swallowed_stop_is_raised_again_at_the_next_check() -> None:
    """A signal's exception can be lost in a finalizer; check_stop (step hook, trial loops) raises it."""
    import contextlib
    import os
    import signal as sig

    from hpo.lifecycle import Stopped, check_stop, stop_on_signals

    previous = {s: sig.getsignal(s) for s in (sig.SIGINT, sig.SIGTERM)}
    try:
        assert stop_on_signals()
        check_stop()  # nothing pending yet
        with contextlib.suppress(Stopped):  # as if a weakref callback had swallowed it
            os.kill(os.getpid(), sig.SIGTERM)
        with pytest.raises(Stopped, match="SIGTERM"):
            check_stop()
        assert stop_on_signals()  # a new run starts with nothing pending
        check_stop()
    finally:
        for s, handler in previous.items():
            sig.signal(s, handler)
