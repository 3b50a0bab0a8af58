"""Live progress per trial and epoch: a rich status line on a TTY, plain lines otherwise (logs, CI, pipes)."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class Progress:
    """Prints trial/epoch progress. ``live`` uses a rich status line; otherwise one plain line per event."""

    def __init__(
        self, stream: TextIO | None = None, live: bool | None = None, total: int | None = None
    ) -> None:
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.total = total
        self._status: Any = None
        self._console: Any = None
        self._started: dict[int, float] = {}
        if self.live:
            from rich.console import Console

            self._console = Console(file=self.stream)

    def _line(self, text: str) -> None:
        if self._console is not None:
            self._console.print(text, highlight=False, markup=False)
        else:
            print(text, file=self.stream, flush=True)

    def _set_status(self, text: str) -> None:
        if self._console is None:
            return
        if self._status is None:
            self._status = self._console.status(text)
            self._status.start()
        else:
            self._status.update(text)

    def trial_started(self, number: int, summary: str) -> None:
        self._started[number] = time.perf_counter()
        self._line(f"[trial {number}] start {summary}")
        self._set_status(f"trial {number}: {summary}")

    def step(self, number: int, epoch: int, epochs: int, step: int, steps: int) -> None:
        if self.live:
            self._set_status(f"trial {number}: epoch {epoch + 1}/{epochs} step {step + 1}/{steps}")

    def epoch(self, number: int, epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        self._line(f"[trial {number}] epoch {epoch + 1}/{epochs} {shown}")

    def trial_finished(self, number: int, state: str, value: float | None, note: str = "") -> None:
        took = time.perf_counter() - self._started.pop(number, time.perf_counter())
        val = f" value={value:.4f}" if value is not None else ""
        extra = f" ({note})" if note else ""
        self._line(f"[trial {number}] {state}{val} in {took:.1f}s{extra}")

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
