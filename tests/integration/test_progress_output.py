"""What `hpo tune` prints: a live bar (k/N, ETA) on a terminal, one plain line per event elsewhere; each
status line once; no third-party INFO lines without --verbose."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from collections import Counter
from pathlib import Path

from tests.support import CI_CONFIG, hpo_cmd, quiet_env

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
EVENT = re.compile(r"^(\[(trial \d+|launcher|study)\]|study \S+ \|)")


def tune(out: Path, *extra: str, trials: int = 2) -> list[str]:
    cfg = ["--config", str(CI_CONFIG), "--output-dir", str(out)]
    return hpo_cmd("tune", *cfg, "--n-trials", str(trials), "--epochs", "1", *extra)


def run_in_pty(cmd: list[str], timeout: float = 400) -> tuple[int, str]:
    """Run ``cmd`` with a pseudo-terminal as its stdin/stdout/stderr; its exit code and raw output."""
    master, slave = pty.openpty()
    env = quiet_env() | {"COLUMNS": "200", "LINES": "40", "TERM": "xterm"}
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
        os.close(master)
    return proc.returncode, b"".join(chunks).decode(errors="replace")


def screen_lines(raw: str) -> list[str]:
    """The lines as a terminal leaves them: escapes dropped, each the text after its last carriage return."""
    text = ANSI.sub("", raw)
    return [line.rstrip("\r").split("\r")[-1].strip() for line in text.split("\n")]


def events(lines: list[str]) -> list[str]:
    return [line for line in lines if EVENT.match(line)]


def test_terminal_shows_k_of_n_eta_and_each_status_line_once(tmp_path: Path) -> None:
    rc, raw = run_in_pty(tune(tmp_path / "runs", "--par", "2", "--no-mlflow", trials=3))
    assert rc == 0, raw[-3000:]
    assert "\x1b[" in raw  # a live display: redrawn in place
    shown = ANSI.sub("", raw)
    # two workers finish the first two trials; the ETA of the third is the median duration of those
    assert re.search(r"trials [12]/3 \| elapsed \d+s \| ETA [1-9]\d*s \| best \d\.\d{4}", shown), shown[
        -3000:
    ]
    assert "trials 3/3" in shown
    assert re.search(
        r"w[01]\.0: trial \d (training epoch|loading|sampling|after)", shown
    )  # one line per worker
    seen = events(screen_lines(raw))
    assert any(line.startswith("[trial 0] start") for line in seen), seen  # the workers' lines come through
    twice = [line for line, n in Counter(seen).items() if n > 1]
    assert not twice, f"printed more than once: {twice}"


def test_pipe_gets_one_plain_line_per_event_and_no_mlflow_info(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    res = (
        subprocess.run(  # stdout is a pipe; MLflow on (a SQLite store under --output-dir), so it really runs
            tune(out), capture_output=True, text=True, timeout=400, env=quiet_env()
        )
    )
    assert res.returncode == 0, res.stdout + res.stderr
    text = res.stdout + res.stderr
    assert "\x1b" not in text and "\r" not in text  # no bar, no escapes
    assert " INFO " not in text and "INFO mlflow" not in text, text
    assert (out / "mlflow.db").exists()
    lines = res.stdout.splitlines()
    seen = events(lines)
    assert not [line for line, n in Counter(seen).items() if n > 1], seen
    for number in (0, 1):
        assert sum(line.startswith(f"[trial {number}] start ") for line in lines) == 1
        assert (
            sum(
                re.match(rf"\[trial {number}\] complete value=\d\.\d{{4}} in ", line) is not None
                for line in lines
            )
            == 1
        )
    assert sum(line.startswith("[study] trials ") for line in lines) == 3  # 0/2, 1/2, 2/2: one per change
    assert re.search(
        r"^\[study\] trials 1/2 \| elapsed \d+s \| ETA \d+s \| best \d\.\d{4}$", res.stdout, re.M
    )
