"""PAR worker processes on one GPU, parent side: start, supervise, replace, recycle, stop on Ctrl-C/SIGTERM.

The parent creates the study, writes the resolved config beside the storage and starts PAR `hpo worker`
processes (``hpo.run.worker``, each with its own CUDA context and memory-aware admission). It replaces dead
workers (their running trial is failed at once and retried once), recycles workers after K trials, and on
Ctrl-C or SIGTERM stops them so that no trial is left RUNNING. Each worker gets a slot and generation (its
sampler seed: no two workers replay one sequence) and the launcher's pid: it dies with the launcher.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import optuna
from optuna.trial import TrialState

from hpo.config.study import MLFLOW_URI_ENV, StudyConfig
from hpo.errors import HpoError, StorageDown
from hpo.lifecycle import Stopped, StopRequest, ignore_stop_signals
from hpo.memory.host import host_available
from hpo.redact import redact
from hpo.run.bootstrap import start_study
from hpo.run.deaths import CrashLoop, last_error, likely_cause, ran_count, repeated_failures
from hpo.run.isolation import worker_env
from hpo.run.liveness import SpinGuard, slots_left
from hpo.run.placement import cuda_visible, gpu_count
from hpo.run.protocol import WorkerExit, WorkerId, config_path, read_marker, trial_file, write_private
from hpo.run.report import TuneReport, finish, finished_by, report_path, status_line
from hpo.run.serial import MAX_CONSECUTIVE_FAILURES, disk_full_error
from hpo.run.setup import prepare
from hpo.run.study_progress import LauncherView
from hpo.run.trial_map import WorkerTrials
from hpo.storage.retry import stopped_error
from hpo.storage.study import fail_trial, finished_count, open_study, public_config
from hpo.units import MIB


@dataclass
class LaunchReport:
    """What the supervisor saw."""

    started: int = 0
    recycled: int = 0
    crashed: int = 0
    poisoned: int = 0
    retried_trials: list[int] = field(default_factory=list)
    pids: set[int] = field(default_factory=set)  # every worker started
    interrupted: bool = False
    signum: int | None = None  # the signal that stopped the launcher (SIGINT or SIGTERM)
    crash_loop: str = ""  # why the crash-loop breaker stopped the launcher (hpo.run.deaths.CrashLoop)
    disk_full: str = ""  # a worker's write failed on a full disk: the launcher stopped every worker
    failures: HpoError | None = None  # trials kept failing the same way (hpo.run.deaths.FailureStreak)
    storage_down: StorageDown | None = None  # the storage stayed unreachable past --storage-retry


@dataclass
class _Worker:
    proc: subprocess.Popen[bytes]
    id: WorkerId

    @property
    def name(self) -> str:
        return str(self.id)


class Launcher:
    """Starts and supervises PAR worker processes for one study."""

    def __init__(
        self,
        cfg: StudyConfig,
        par: int,
        *,
        recycle_after: int = 50,
        poll: float = 1.0,
        status_every: float = 10.0,
        stream: Any = None,
    ) -> None:
        self.cfg, self.par, self.recycle_after, self.poll = cfg, par, recycle_after, poll
        self.status_every = status_every
        self.stream = stream or sys.stdout
        self.report = LaunchReport()
        self.workers: list[_Worker] = []
        self._generations = [0] * par  # workers started so far per slot
        self.breaker = CrashLoop(cfg.max_worker_deaths)
        self.trials = WorkerTrials(cfg)  # which trial each worker runs (its trial is failed when it dies)
        self.spin = SpinGuard(par)  # workers that exit without running a trial, in a row
        self.view = LauncherView(cfg, par, self.stream)  # a bar on a terminal; each status once

    def _say(self, text: str) -> None:
        self.view.say(text)

    def _spawn(self) -> None:
        busy = {w.id.slot for w in self.workers}
        slot = next(i for i in range(self.par) if i not in busy)
        wid = WorkerId(slot, self._generations[slot])
        self._generations[slot] += 1
        cmd = [
            sys.executable,
            "-m",
            "hpo",
            "worker",
            "--study",
            self.cfg.study,
            "--config-json",
            str(config_path(self.cfg)),
            "--recycle-after",
            str(self.recycle_after),
            "--slot",
            str(wid.slot),
            "--generation",
            str(wid.generation),
            "--launcher-pid",
            str(os.getpid()),
        ]
        # its own session: a terminal's Ctrl-C reaches the launcher only, which stops the workers in order
        # the storage URL (and an MLflow URI) may carry a password: by environment, never on the command line
        env = worker_env(os.environ, self.par) | {"OPTUNA_STORAGE": self.cfg.storage_url}
        visible = cuda_visible(self.cfg, os.environ.get("CUDA_VISIBLE_DEVICES"))
        if visible is not None:  # --gpus: the workers see the selected GPUs (hpo.run.placement)
            env["CUDA_VISIBLE_DEVICES"] = visible
        if self.cfg.mlflow:
            env[MLFLOW_URI_ENV] = self.cfg.mlflow_tracking_uri
        proc = self.view.spawn(cmd, env)  # on a terminal its lines are relayed above the bar
        self.workers.append(_Worker(proc, wid))
        self.report.started += 1
        self.report.pids.add(proc.pid)

    def _fail_orphan_trial(self, study: optuna.Study, w: _Worker, rc: int) -> dict[str, Any]:
        """A worker exited: fail the trials it left RUNNING, with how it died, and enqueue one retry each
        (hpo.run.trial_map); returns the evidence (with the trial and its config), empty when it left none.
        Workers that keep exiting without running a trial stop the run (hpo.run.liveness.SpinGuard)."""
        ran, death, failed = self.trials.fail_left(study, w.proc.pid, rc, w.name)
        self.report.retried_trials += failed
        if (rc == WorkerExit.DONE or ran) and self.spin.exited(ran) and slots_left(study, self.cfg.n_trials):
            running = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
            self.report.crash_loop = self.spin.message(finished_count(study), self.cfg.n_trials, running)
        return death

    def _reap(self, study: optuna.Study) -> None:
        for w in list(self.workers):
            rc = w.proc.poll()
            if rc is None:
                continue
            self.workers.remove(w)
            if rc == WorkerExit.RECYCLE:
                self.report.recycled += 1
            elif rc == WorkerExit.DISK_FULL:
                self.report.disk_full = last_error(study) or "No space left on device"
                self._say(f"{w.name} stopped: disk full ({self.report.disk_full}); stopping the workers")
            elif rc == WorkerExit.STORAGE_DOWN:  # its storage calls gave up (hpo.storage.retry)
                raise stopped_error(f"worker {w.name}", self.cfg.storage_retry_s)
            elif rc == WorkerExit.POISONED:
                self.report.poisoned += 1
                self._say(f"{w.name} stopped after a fatal CUDA error; replacing it")
            elif rc not in (WorkerExit.DONE, WorkerExit.INTERRUPTED):
                self.report.crashed += 1
                death = self._fail_orphan_trial(study, w, rc)
                cause = death.get("likely_cause") or likely_cause(rc, 0, 0)
                self._say(f"{w.name} (pid {w.proc.pid}) died with exit code {rc} ({cause}); replacing it")
                if self.breaker.died(ran_count(study), death or {"likely_cause": cause}):
                    self.report.crash_loop = self.breaker.message()
                continue
            self._fail_orphan_trial(study, w, rc)

    def status_line(self, study: optuna.Study) -> str:
        return status_line(self.cfg, study, len(self.workers))

    def _shutdown(self, study: optuna.Study, stop: Stopped, grace: float = 30.0) -> None:
        ignore_stop_signals()  # a second SIGTERM / Ctrl-C must not cut the cleanup short
        for w in self.workers:
            with contextlib.suppress(ProcessLookupError):
                w.proc.send_signal(stop.signum)
        deadline = time.monotonic() + grace
        for w in self.workers:
            try:
                w.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
        for w in self.workers:  # a worker that could not fail its own trial
            found = read_marker(trial_file(self.cfg, w.proc.pid))
            if found is not None:
                fail_trial(study, found[0], f"interrupted: {stop.reason}")
            trial_file(self.cfg, w.proc.pid).unlink(missing_ok=True)
        self.workers.clear()
        # anything still RUNNING now has no live process in this launcher
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            fail_trial(study, t.number, f"interrupted: {stop.reason}")

    def run(self) -> LaunchReport:
        cfg = self.cfg
        # Ctrl-C (even when started in the background) and SIGTERM stop the workers; checked between steps:
        # an exception raised inside a storage call could leave a SQLite lock held that blocks every worker
        request = StopRequest()
        request.install()
        since = datetime.now()  # trials that fail from now on count towards the failure breaker
        study = open_study(cfg)  # run_parallel set it up (hpo.run.bootstrap)
        config_path(cfg).parent.mkdir(parents=True, exist_ok=True)
        # one host-RAM capacity for every worker: --host-memory, else what is available before they start
        host = cfg.host_memory or f"{host_available() // MIB}MiB"
        write_private(config_path(cfg), json.dumps(public_config(cfg) | {"host_memory": host}))
        self._say(f"{self.par} workers, recycle after {self.recycle_after} trials, target {cfg.n_trials}")
        last_status = 0.0
        try:
            while True:
                request.check()
                self.trials.observe(w.proc.pid for w in self.workers)
                self.breaker.trial_finished(ran_count(study))
                self._reap(study)
                self.report.failures = repeated_failures(study, since, MAX_CONSECUTIVE_FAILURES)
                if self.report.crash_loop or self.report.disk_full or self.report.failures:
                    why = "disk full" if self.report.disk_full else "crash-loop breaker"
                    why = "repeated trial failures" if self.report.failures else why
                    self._say(f"{why}: stopping the workers")
                    self._shutdown(study, Stopped(signal.SIGTERM, why))
                    break
                done = finished_count(study)
                if done >= cfg.n_trials and not self.workers:
                    break
                # never more workers than trials left: finished and live RUNNING ones (hpo.run.liveness)
                want = min(self.par, cfg.n_trials - done, len(self.workers) + slots_left(study, cfg.n_trials))
                waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
                while len(self.workers) < want and (
                    done + len(self.workers) < cfg.n_trials + self.par or waiting
                ):
                    self._spawn()
                if time.monotonic() - last_status >= self.status_every:
                    optuna.storages.fail_stale_trials(study)  # another host's dead trials (heartbeats)
                    self.view.status(self.status_line(study))
                    last_status = time.monotonic()
                self.view.tick(study, {w.name: w.proc.pid for w in self.workers})
                time.sleep(self.poll)
        except KeyboardInterrupt as exc:
            stop = exc if isinstance(exc, Stopped) else Stopped(signal.SIGINT)
            self.report.interrupted, self.report.signum = True, stop.signum
            self._say(f"{stop.reason}: stopping workers (finished trials are kept; rerun to resume)")
            self._shutdown(study, stop)
        except StorageDown as exc:  # unreachable past --storage-retry: the workers stop, a rerun resumes
            self.report.storage_down = exc
            self._say(f"{exc.message}: stopping the workers")
            with contextlib.suppress(StorageDown):  # the next start fails the trials left RUNNING
                self._shutdown(study, Stopped(signal.SIGTERM, "storage unreachable"))
            return self.report
        self.view.status(self.status_line(study))
        return self.report


def run_parallel(cfg: StudyConfig, started: float) -> TuneReport:
    """`hpo tune --par N`: N supervised worker processes."""
    wall_start = time.time()
    setup = prepare(cfg)  # fail here, not once per worker
    study, tracker = start_study(cfg, setup)  # storage, study, MLflow: once, before any worker starts
    before = finished_count(study)
    # --par workers per GPU (--gpus, default every visible one; one simulated card on CPU)
    launcher = Launcher(cfg, cfg.par * gpu_count(cfg), recycle_after=cfg.recycle_after)
    try:
        launch = launcher.run()
    finally:
        launcher.view.close()
    if launch.disk_full:  # as a serial run: one line, finished trials kept, nothing left RUNNING
        raise disk_full_error(cfg, launch.disk_full)
    if launch.storage_down is not None:  # one line, exit 75 (hpo.commands.exit_codes)
        raise launch.storage_down
    if launch.failures is not None:  # the same line as a serial run; the workers were stopped
        raise launch.failures
    report = TuneReport(
        study=cfg.study,
        storage=redact(cfg.storage_url),
        target=cfg.n_trials,
        finished_before=before,
        mlflow_uri=redact(cfg.mlflow_tracking_uri) if cfg.mlflow else None,
        interrupted=launch.interrupted,
        signum=launch.signum,
        metric=setup.agent.metric_name,
        baseline=setup.agent.majority_baseline(setup.splits, "val"),
        baseline_name=setup.agent.baseline_name,
    )
    report.new = finished_by(study, launch.pids, wall_start)
    report.dropped_rows = setup.dropped_rows
    report.crash_loop = bool(launch.crash_loop)
    report.stopped_reason = (
        launch.crash_loop or "interrupted: finished trials are kept; rerun to resume"
        if launch.crash_loop or launch.interrupted
        else f"target reached ({launch.started} workers started, {launch.recycled} "
        f"recycled, {launch.crashed} replaced after a crash)"
    )
    finish(report, study, tracker, report_path(cfg))
    report.seconds = time.monotonic() - started
    return report
