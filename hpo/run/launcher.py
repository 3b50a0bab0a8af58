"""PAR worker processes on one GPU, parent side: start, supervise, replace, recycle, stop on Ctrl-C.

The parent creates the study, writes the resolved config beside the storage and starts PAR `hpo worker`
processes (``hpo.run.worker``, each with its own CUDA context and memory-aware admission). It replaces dead
workers (their running trial is failed at once and retried once), recycles workers after K trials, and on
Ctrl-C stops them so that no trial is left RUNNING.
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
from typing import Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from hpo.config import StudyConfig
from hpo.gpu import detect
from hpo.results.trials import count_states
from hpo.run.bootstrap import start_study
from hpo.run.isolation import worker_env
from hpo.run.protocol import WorkerExit, config_path, trial_file
from hpo.run.report import TuneReport, finish, finished_by
from hpo.run.reservations import ledger_path_for, usage_line
from hpo.run.setup import prepare
from hpo.study import fail_trial, finished_count, open_study
from hpo.units import GIB


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


@dataclass
class _Worker:
    proc: subprocess.Popen[bytes]
    name: str


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
        self._stopping = False
        self._n = 0

    def _say(self, text: str) -> None:
        print(f"[launcher] {text}", file=self.stream, flush=True)

    def _spawn(self) -> None:
        self._n += 1
        cmd = [
            sys.executable,
            "-m",
            "hpo",
            "worker",
            "--study",
            self.cfg.study,
            "--storage",
            self.cfg.storage_url,
            "--config-json",
            str(config_path(self.cfg)),
            "--recycle-after",
            str(self.recycle_after),
        ]
        proc = subprocess.Popen(cmd, env=worker_env(os.environ, self.par), start_new_session=True)
        self.workers.append(_Worker(proc, f"w{self._n}"))
        self.report.started += 1
        self.report.pids.add(proc.pid)

    def _fail_orphan_trial(self, study: optuna.Study, pid: int) -> None:
        """A worker died mid-trial: fail its trial now and enqueue one retry (as heartbeats would)."""
        marker = trial_file(self.cfg, pid)
        if not marker.is_file():
            return
        with contextlib.suppress(ValueError, KeyError, OSError):  # unreadable marker, unknown trial
            failed = fail_trial(study, int(marker.read_text().strip()), "worker process died")
            if failed is not None:
                RetryHeartbeatStaleTrialCallback(max_retry=1)(study, failed)
                self.report.retried_trials.append(failed.number)
        marker.unlink(missing_ok=True)

    def _reap(self, study: optuna.Study) -> None:
        for w in list(self.workers):
            rc = w.proc.poll()
            if rc is None:
                continue
            self.workers.remove(w)
            if rc == WorkerExit.RECYCLE:
                self.report.recycled += 1
            elif rc == WorkerExit.POISONED:
                self.report.poisoned += 1
                self._say(f"{w.name} stopped after a fatal CUDA error; replacing it")
            elif rc not in (WorkerExit.DONE, WorkerExit.INTERRUPTED):
                self.report.crashed += 1
                self._say(f"{w.name} (pid {w.proc.pid}) died with exit code {rc}; replacing it")
            self._fail_orphan_trial(study, w.proc.pid)

    def status_line(self, study: optuna.Study) -> str:
        c = count_states(study)
        done = finished_count(study)
        info = detect(0)
        gpu = f" | GPU {info.used_bytes / GIB:.1f}/{info.total_bytes / GIB:.1f} GB" if info.available else ""
        usage = usage_line(ledger_path_for(self.cfg.storage_url, self.cfg.output_dir))
        ledger = f" | {usage}" if usage else ""
        return (
            f"{done}/{self.cfg.n_trials} finished | complete {c['complete']} | pruned by estimate "
            f"{c['pruned_memory_estimate']} | OOM {c['pruned_oom']} | early stop {c['pruned_early_stop']} | "
            f"failed {c['fail']} | running {c['running']} | workers {len(self.workers)}{gpu}{ledger}"
        )

    def _shutdown(self, study: optuna.Study, grace: float = 30.0) -> None:
        for w in self.workers:
            with contextlib.suppress(ProcessLookupError):
                w.proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + grace
        for w in self.workers:
            try:
                w.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
        for w in self.workers:
            self._fail_orphan_trial(study, w.proc.pid)
        self.workers.clear()
        # anything still RUNNING now has no live process in this launcher
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            fail_trial(study, t.number, "stopped by Ctrl-C")

    def run(self) -> LaunchReport:
        cfg = self.cfg
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C even when started in the background
        study = open_study(cfg)  # run_parallel set it up (hpo.run.bootstrap)
        config_path(cfg).parent.mkdir(parents=True, exist_ok=True)
        config_path(cfg).write_text(json.dumps(cfg.model_dump(mode="json")))
        self._say(f"{self.par} workers, recycle after {self.recycle_after} trials, target {cfg.n_trials}")
        last_status = 0.0
        try:
            while True:
                self._reap(study)
                done = finished_count(study)
                if done >= cfg.n_trials and not self.workers:
                    break
                want = min(self.par, max(0, cfg.n_trials - done))  # never more workers than trials left
                waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
                while len(self.workers) < want and (
                    done + len(self.workers) < cfg.n_trials + self.par or waiting
                ):
                    self._spawn()
                if time.monotonic() - last_status >= self.status_every:
                    self._say(self.status_line(study))
                    last_status = time.monotonic()
                time.sleep(self.poll)
        except KeyboardInterrupt:
            self.report.interrupted = True
            self._say("interrupted: stopping workers (finished trials are kept; rerun to resume)")
            self._shutdown(study)
        self._say(self.status_line(study))
        return self.report


def run_parallel(cfg: StudyConfig, started: float) -> TuneReport:
    """`hpo tune --par N`: N supervised worker processes."""
    wall_start = time.time()
    setup = prepare(cfg)  # fail here, not once per worker
    study, tracker = start_study(cfg, setup)  # storage, study, MLflow: once, before any worker starts
    before = finished_count(study)
    launch = Launcher(cfg, cfg.par, recycle_after=cfg.recycle_after).run()
    report = TuneReport(
        study=cfg.study,
        storage=cfg.storage_url,
        target=cfg.n_trials,
        finished_before=before,
        mlflow_uri=cfg.mlflow_tracking_uri if cfg.mlflow else None,
        interrupted=launch.interrupted,
        metric=setup.agent.metric_name,
        baseline=setup.agent.majority_baseline(setup.splits, "val"),
    )
    report.new = finished_by(study, launch.pids, wall_start)
    report.dropped_rows = setup.dropped_rows
    report.stopped_reason = (
        "interrupted: finished trials are kept; rerun to resume"
        if launch.interrupted
        else f"target reached ({launch.started} workers started, {launch.recycled} "
        f"recycled, {launch.crashed} replaced after a crash)"
    )
    finish(report, study, tracker)
    report.seconds = time.monotonic() - started
    return report
