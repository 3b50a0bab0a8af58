"""Progress: plain lines when not a TTY, a rich live status on a terminal."""

from __future__ import annotations

import io
from types import SimpleNamespace

from hpo.progress import Progress, StudyState, eta_seconds, fmt_duration, overall_text
from hpo.run.study_progress import LauncherView, study_state


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


def test_eta_is_remaining_times_median_over_parallelism() -> None:
    assert eta_seconds([10.0, 30.0, 1000.0], remaining=4) == 120.0  # the median (30), not the mean
    assert eta_seconds([10.0, 20.0], remaining=4, parallelism=2) == 30.0  # median 15 x 4 / 2
    assert eta_seconds([10.0], remaining=1, parallelism=4) == 10.0  # one trial left: one worker runs it
    assert eta_seconds([], remaining=3) is None  # nothing finished yet: unknown
    assert eta_seconds([], remaining=0) == 0.0


def test_durations_format_short() -> None:
    assert [fmt_duration(s) for s in (None, 0, 42.4, 60, 185, 3600, 7620)] == [
        "?",
        "0s",
        "42s",
        "1m00s",
        "3m05s",
        "1h00m",
        "2h07m",
    ]


def test_overall_line_shows_k_of_n_eta_and_best_or_pareto() -> None:
    state = StudyState(done=2, target=5, durations=[60.0, 90.0], best=0.81234, parallelism=1)
    assert overall_text(state, 130) == "trials 2/5 | elapsed 2m10s | ETA 3m45s | best 0.8123"
    multi = StudyState(done=1, target=3, durations=[5.0], pareto=2)
    assert overall_text(multi, 5) == "trials 1/3 | elapsed 5s | ETA 10s | pareto 2"
    assert overall_text(StudyState(target=3), 1) == "trials 0/3 | elapsed 1s | ETA ?"


def test_plain_study_line_only_when_it_changes() -> None:
    out = io.StringIO()
    p = Progress(stream=out)
    p.study(StudyState(done=0, target=2))
    p.study(StudyState(done=0, target=2))  # a poll with nothing new: no line
    p.study(StudyState(done=1, target=2, durations=[4.0], best=0.5))
    lines = out.getvalue().splitlines()
    assert lines[0] == "[study] trials 0/2 | elapsed 0s | ETA ?"
    assert lines[1].startswith("[study] trials 1/2 | elapsed ") and lines[1].endswith(
        "| ETA 4s | best 0.5000"
    )
    assert len(lines) == 2 and "\x1b" not in out.getvalue()


def test_live_overall_bar_renders_k_of_n_and_the_trial_step() -> None:
    out = io.StringIO()
    p = Progress(stream=out, live=True)
    p.study(StudyState(done=1, target=3, durations=[10.0], best=0.7))
    p.trial_started(1, "tiny")
    p.step(1, 0, 2, 4, 10)
    p.line("[trial 1] epoch 1/2 macro_f1=0.7000")
    p.close()
    text = out.getvalue()
    assert "trials 1/3 | elapsed 0s | ETA 20s | best 0.7000" in text
    assert "trial 1: epoch 1/2 [##########----------] step 5/10" in text


def test_study_state_of_a_multi_objective_study_has_no_best() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)), n_trials=3)
    state = study_state(study, target=5)
    assert state.best is None and state.pareto is not None and 1 <= state.pareto <= 3
    assert state.done == 3 and len(state.durations) == 3
    single = optuna.create_study(direction="maximize")
    assert study_state(single, target=2).best is None  # no trial yet: nothing to show
    single.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert study_state(single, target=2).best == single.best_value


def test_launcher_prints_each_status_line_once() -> None:
    out = io.StringIO()
    view = LauncherView(SimpleNamespace(n_trials=2), 2, out)  # type: ignore[arg-type]
    for line in ("0/2 finished | running 2", "0/2 finished | running 2", "1/2 finished | running 1"):
        view.status(line)
    view.status("1/2 finished | running 1")  # the final status, unchanged since the last poll
    assert out.getvalue().splitlines() == [
        "[launcher] 0/2 finished | running 2",
        "[launcher] 1/2 finished | running 1",
    ]
