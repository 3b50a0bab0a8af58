"""Live progress of a study: a rich bar on a TTY, plain lines otherwise (logs, CI, pipes).

On a terminal one overall line (trials finished / target, elapsed, ETA, best so far) sits above the current
trial's epoch/step line (with ``--par N`` one line per worker); trial starts, epochs and ends print above it.
Elsewhere each event is one plain line and nothing is redrawn: no ANSI escapes in a log file.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO


def eta_seconds(durations: Sequence[float], remaining: int, parallelism: int = 1) -> float | None:
    """Seconds left: remaining trials x the median finished-trial duration / parallelism (None: no data)."""
    if remaining <= 0:
        return 0.0
    if not durations:
        return None
    return remaining * statistics.median(durations) / max(1, min(parallelism, remaining))


def fmt_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h07m``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


@dataclass
class StudyState:
    """What the overall line shows: finished trials, the target, their durations and the best so far."""

    done: int = 0
    target: int = 0
    durations: list[float] = field(default_factory=list)
    best: float | None = None
    pareto: int | None = None  # a multi-objective study: trials on the Pareto front (no single best)
    parallelism: int = 1


def overall_text(state: StudyState, elapsed: float) -> str:
    """``trials 2/5 | elapsed 1m10s | ETA 1m45s | best 0.8123`` (best: ``pareto 3`` or nothing)."""
    eta = eta_seconds(state.durations, state.target - state.done, state.parallelism)
    text = f"trials {state.done}/{state.target} | elapsed {fmt_duration(elapsed)} | ETA {fmt_duration(eta)}"
    if state.best is not None:
        text += f" | best {state.best:.4f}"
    elif state.pareto is not None:
        text += f" | pareto {state.pareto}"
    return text


class _View:
    """The live area, rendered at each refresh (elapsed keeps ticking between events)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def __rich__(self) -> Any:
        from rich.text import Text

        p = self.progress
        lines = [overall_text(p.state, time.monotonic() - p.t0)] if p.state.target else []
        lines += [f"  {line}" for line in p.current.values()]
        return Text("\n".join(lines))


class Progress:
    """Prints trial/epoch progress. ``live`` draws a rich bar; otherwise one plain line per event."""

    def __init__(
        self, stream: TextIO | None = None, live: bool | None = None, total: int | None = None
    ) -> None:
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.state = StudyState(target=total or 0)
        self.current: dict[Any, str] = {}  # per trial (or worker): what it does now
        self.t0 = time.monotonic()
        self._live: Any = None
        self._console: Any = None
        self._started: dict[int, float] = {}
        self._last_overall = ""
        if self.live:
            from rich.console import Console

            self._console = Console(file=self.stream, force_terminal=True)  # asked to draw: draw

    def line(self, text: str) -> None:
        if self._console is not None:
            self._console.print(text, highlight=False, markup=False)
        else:
            print(text, file=self.stream, flush=True)

    def _refresh(self) -> None:
        if self._console is None:
            return
        if self._live is None:
            from rich.live import Live

            self._live = Live(_View(self), console=self._console, refresh_per_second=4, transient=True)
            self._live.start()
        self._live.refresh()

    def study(self, state: StudyState) -> None:
        """The study changed (a trial finished, a run started): redraw; in plain mode one line if it moved."""
        self.state = state
        if self.live:
            self._refresh()
            return
        key = f"{state.done}/{state.target} {state.best} {state.pareto}"
        if key != self._last_overall:
            self._last_overall = key
            self.line(f"[study] {overall_text(state, time.monotonic() - self.t0)}")

    def trial_started(self, number: int, summary: str) -> None:
        self._started[number] = time.perf_counter()
        self.line(f"[trial {number}] start {summary}")
        self.current[number] = f"trial {number}: {summary}"
        self._refresh()

    def step(self, number: int, epoch: int, epochs: int, step: int, steps: int) -> None:
        if self.live:
            self.current[number] = f"trial {number}: epoch {epoch + 1}/{epochs} {_bar(step + 1, steps)}"
            if self._live is None:
                self._refresh()  # later steps show at the next automatic refresh (4 a second)

    def epoch(self, number: int, epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        self.line(f"[trial {number}] epoch {epoch + 1}/{epochs} {shown}")

    def trial_finished(self, number: int, state: str, value: float | None, note: str = "") -> None:
        took = time.perf_counter() - self._started.pop(number, time.perf_counter())
        val = f" value={value:.4f}" if value is not None else ""
        extra = f" ({note})" if note else ""
        self.current.pop(number, None)
        self.line(f"[trial {number}] {state}{val} in {took:.1f}s{extra}")

    def workers(self, current: dict[str, str]) -> None:
        """``--par N``: what each worker does now (its trial and phase), one line each on a terminal."""
        if self.live:
            self.current = dict(current)
            self._refresh()

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def _bar(done: int, total: int, width: int = 20) -> str:
    """``[#######-------------] step 7/20``."""
    filled = width * done // total if total > 0 else 0
    return f"[{'#' * filled}{'-' * (width - filled)}] step {done}/{total}"
