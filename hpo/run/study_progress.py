"""What the overall progress line of a study shows, read from its storage (hpo.progress draws it)."""

from __future__ import annotations

import contextlib
import subprocess
import threading
from typing import TextIO

import optuna
from optuna.trial import TrialState

from hpo.config.study import StudyConfig
from hpo.progress import Progress, StudyState
from hpo.results.pareto import front_trials
from hpo.run.protocol import read_marker, trial_file
from hpo.storage.study import FINISHED_STATES


def study_state(study: optuna.Study, target: int, parallelism: int = 1) -> StudyState:
    """Finished trials (complete + pruned) against ``target``, the durations of the complete ones (the ETA's
    median; a trial pruned by the memory estimate takes no time), the best value; for a multi-objective
    study, where there is no single best, the size of the Pareto front."""
    trials = study.get_trials(deepcopy=False, states=FINISHED_STATES)
    timed = [t for t in trials if t.datetime_start is not None and t.datetime_complete is not None]
    complete = [t for t in timed if t.state == TrialState.COMPLETE] or timed
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in complete]  # type: ignore[operator]
    state = StudyState(done=len(trials), target=target, durations=durations, parallelism=parallelism)
    if len(study.directions) > 1:  # the front as `hpo best` and the report compute it
        state.pareto = len(front_trials(study))
        return state
    with contextlib.suppress(Exception):  # no complete trial yet (ValueError)
        state.best = float(study.best_value)
    return state


def running_phases(found: dict[str, tuple[int, str] | None]) -> dict[str, str]:
    """``--par N``: one line per worker from its marker (hpo.run.protocol): its trial and phase."""
    return {
        w: (f"{w}: trial {m[0]} {m[1]}" if m is not None else f"{w}: between trials")
        for w, m in found.items()
    }


class LauncherView:
    """The launcher's output: ``[launcher]`` lines, each status line once (an unchanged one is not printed
    again); on a terminal the overall bar and one line per worker, the workers' own lines relayed above it."""

    def __init__(self, cfg: StudyConfig, par: int, stream: TextIO) -> None:
        self.progress = Progress(stream=stream, total=cfg.n_trials)
        self.cfg, self.live, self.par, self._last = cfg, self.progress.live, par, ""

    def say(self, text: str) -> None:
        self.progress.line(f"[launcher] {text}")

    def status(self, line: str) -> None:
        if line != self._last:
            self._last = line
            self.say(line)

    def tick(self, study: optuna.Study, pids: dict[str, int]) -> None:
        """Redraw the bar: the study's counts and each worker's trial (its marker file, hpo.run.protocol)."""
        if self.live:
            self.progress.study(study_state(study, self.cfg.n_trials, self.par))
            self.progress.workers(
                running_phases({w: read_marker(trial_file(self.cfg, p)) for w, p in pids.items()})
            )

    def spawn(self, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start a worker in its own session (a terminal's Ctrl-C reaches the launcher only); on a terminal
        its output comes through a pipe and is printed above the live area (written straight, it tears it)."""
        out = subprocess.PIPE if self.live else None
        proc = subprocess.Popen(
            cmd, env=env, start_new_session=True, stdout=out, stderr=out and subprocess.STDOUT
        )
        if self.live:
            self._relay(proc)
        return proc

    def _relay(self, proc: subprocess.Popen[bytes]) -> None:
        """Print a worker's output lines above the live area (they would tear it, written straight)."""

        def pump() -> None:
            for raw in proc.stdout or ():
                self.progress.line(raw.decode(errors="replace").rstrip())

        threading.Thread(target=pump, daemon=True).start()

    def close(self) -> None:
        self.progress.close()
