"""SIGHUP (an ssh session that dropped) stops `hpo tune` like SIGTERM, and output to the dead terminal is
dropped instead of failing the cleanup."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from hpo import lifecycle
from hpo.commands.exit_codes import for_signal
from hpo.lifecycle import Stopped, StopRequest, stop_on_signals

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@pytest.fixture
def handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in SIGNALS}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_sighup_raises_stopped_and_exits_129(handlers: None) -> None:
    assert stop_on_signals()
    with pytest.raises(Stopped) as info:
        os.kill(os.getpid(), signal.SIGHUP)
    assert info.value.signum == signal.SIGHUP and str(info.value) == "stopped by SIGHUP"
    assert for_signal(info.value.signum) == 129
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN  # a second one does not cut the cleanup


def test_the_launcher_records_sighup(handlers: None) -> None:
    request = StopRequest()
    assert request.install()
    os.kill(os.getpid(), signal.SIGHUP)
    with pytest.raises(Stopped) as info:
        request.check()
    assert info.value.signum == signal.SIGHUP


def test_a_terminal_output_is_detached_but_a_file_or_pipe_is_kept(tmp_path: object) -> None:
    leader, follower = os.openpty()
    read_end, write_end = os.pipe()
    try:
        assert lifecycle.detach_terminal((follower, write_end)) == [follower]
        os.write(follower, b"after the hangup\n")  # goes to /dev/null now
        assert os.path.samefile(f"/proc/self/fd/{follower}", os.devnull)
        os.write(write_end, b"kept")
        assert os.read(read_end, 4) == b"kept"
    finally:
        for fd in (leader, follower, read_end, write_end):
            os.close(fd)
