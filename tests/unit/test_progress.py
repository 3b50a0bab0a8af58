"""Progress: plain lines when not a TTY, a rich live status on a terminal."""

from __future__ import annotations

import io

from hpo.progress import Progress


def test_plain_lines_when_not_a_tty() -> None:
    out = io.StringIO()
    p = Progress(stream=out)
    assert not p.live
    p.trial_started(3, "tiny bs=8")
    p.step(3, 0, 2, 5, 10)  # no output for steps in plain mode
    p.epoch(3, 0, 2, {"macro_f1": 0.5})
    p.trial_finished(3, "complete", 0.5)
    p.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "[trial 3] start tiny bs=8"
    assert lines[1] == "[trial 3] epoch 1/2 macro_f1=0.5000"
    assert lines[2].startswith("[trial 3] complete value=0.5000 in ")
    assert len(lines) == 3


def test_live_mode_prints_epochs_and_stops_cleanly() -> None:
    out = io.StringIO()
    p = Progress(stream=out, live=True)
    p.trial_started(0, "tiny")
    p.step(0, 0, 1, 0, 4)
    p.epoch(0, 0, 1, {"macro_f1": 0.75})
    p.close()
    text = out.getvalue()
    assert "[trial 0] start tiny" in text  # brackets are text, not rich markup
    assert "[trial 0] epoch 1/1 macro_f1=0.7500" in text
