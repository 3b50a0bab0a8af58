"""PAR worker processes on one GPU: memory-aware admission, supervision, replacement, recycling, Ctrl-C.

The parent creates the study, writes the resolved config beside the storage and starts PAR `hpo worker`
processes (each with its own CUDA context). A worker reserves a trial's estimated peak in the per-GPU ledger
before it loads a model (waiting while it would not fit beside the running trials), caps its CUDA allocator
at the reservation plus a margin, and releases on any exit path. The parent replaces dead workers (their
running trial is failed at once and retried once), recycles workers after K trials, and on Ctrl-C stops them
so that no trial is left RUNNING.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from hpo.config import StudyConfig
from hpo.isolation import apply_memory_cap, worker_env
from hpo.ledger import Ledger, Reservation, ledger_path_for, usage_line
from hpo.memory.estimate import CUDA_CONTEXT
from hpo.sizing import MemoryPolicy
from hpo.study import create_or_load, finished_count

EXIT_DONE, EXIT_RECYCLE, EXIT_POISONED, EXIT_INTERRUPTED = 0, 10, 3, 130
CAP_MARGIN_BYTES = 512 * 1024**2


def worker_dir(cfg: StudyConfig) -> Path:
    return cfg.output_dir / "workers" / cfg.study


def config_path(cfg: StudyConfig) -> Path:
    return worker_dir(cfg) / "config.json"


class LedgerAdmission:
    """Ledger-backed admission for one worker process.

    ``start()`` records the worker's CUDA context in the ledger (it stays on the card while the worker waits);
    each trial then reserves its estimated device total less that context, waiting until it fits (or, after
    ``lighter_after`` seconds, until one of its lighter equivalent forms fits: hpo.elastic), caps the CUDA
    allocator at the reservation plus ``margin`` and releases on any exit path. ``close()`` gives the
    context back when the worker exits (the ledger reclaims it anyway if the worker dies).
    """

    def __init__(
        self, ledger: Ledger, context_bytes: int, margin_bytes: int, lighter_after: float = 60.0
    ) -> None:
        self.ledger, self.context_bytes, self.margin_bytes = ledger, context_bytes, margin_bytes
        self.lighter_after = lighter_after
        self._hold: Reservation | None = None

    def start(self) -> None:
        self._hold = self.ledger.hold_process(self.context_bytes, label=f"worker pid {os.getpid()} context")

    def close(self) -> None:
        if self._hold is not None:
            self.ledger.release(self._hold)
            self._hold = None

    @contextlib.contextmanager
    def __call__(self, sizes: Sequence[int], trial: int) -> Iterator[int]:
        """Hold room for the first form in ``sizes`` (device totals, sampled form first); yields its index."""
        # an estimate's device total includes the context, which is already on the card
        first, *lighter = (max(0, n - self.context_bytes) for n in sizes)
        label = f"worker pid {os.getpid()}"
        with self.ledger.reserved(
            first, trial=trial, label=label, lighter=lighter, lighter_after=self.lighter_after
        ) as res:
            # the context lives outside the caching allocator, which the cap limits
            apply_memory_cap(res.bytes, self.margin_bytes)
            yield res.form


def make_admission(cfg: StudyConfig, policy: MemoryPolicy, gpu_key: str) -> LedgerAdmission | None:
    """The worker's ledger admission, or None without a GPU budget (a plain CPU run admits everything)."""
    if policy.gpu_bytes is None:
        return None
    ledger = Ledger(
        ledger_path_for(cfg.storage_url, cfg.output_dir),
        gpu_key,
        max(0, policy.gpu_bytes - policy.headroom_bytes),
        poll_interval=0.5,
    )
    # the caps of all workers together may overshoot their reservations by at most the headroom
    margin = min(CAP_MARGIN_BYTES, policy.headroom_bytes // max(1, cfg.par))
    return LedgerAdmission(ledger, CUDA_CONTEXT, margin, cfg.elastic_after_s)


def _trial_file(cfg: StudyConfig, pid: int) -> Path:
    return worker_dir(cfg) / f"{pid}.trial"


# ---- worker side ------------------------------------------------------------------------------------------
def run_worker(cfg: StudyConfig, *, recycle_after: int, worker_id: str = "") -> int:
    """Run trials until the study target is reached (0), K trials were run (10) or CUDA is poisoned (3)."""
    from hpo.gpu import detect
    from hpo.progress import Progress
    from hpo.tune import build_objective, run_one

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    objective = build_objective(cfg, Progress(live=False))
    info = detect(0)
    gpu_key = info.uuid if info.available else f"simulated-{objective.sizer.memory.gpu_bytes}"
    admission = make_admission(cfg, objective.sizer.memory, gpu_key)
    if admission is not None:
        # every other worker's CUDA context stays on the card: a trial must fit beside them
        objective.sizer.memory.resident_bytes = (cfg.par - 1) * CUDA_CONTEXT
        objective.admission = admission
        admission.start()
    marker = _trial_file(cfg, os.getpid())
    marker.parent.mkdir(parents=True, exist_ok=True)

    def on_start(trial: optuna.Trial) -> None:
        marker.write_text(str(trial._trial_id))

    objective.on_start = on_start
    study = create_or_load(cfg)
    done = 0
    try:
        while done < recycle_after:
            running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
            if finished_count(study) + running >= cfg.n_trials:
                return EXIT_DONE
            run_one(study, objective)
            marker.unlink(missing_ok=True)
            done += 1
            if objective.poisoned:
                return EXIT_POISONED
        return EXIT_RECYCLE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        marker.unlink(missing_ok=True)
        if admission is not None:
            admission.close()


# ---- parent side ------------------------------------------------------------------------------------------
@dataclass
class LaunchReport:
    """What the supervisor saw."""

    started: int = 0
    recycled: int = 0
    crashed: int = 0
    poisoned: int = 0
    retried_trials: list[int] = field(default_factory=list)
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
            "--worker-id",
            f"w{self._n}",
        ]
        proc = subprocess.Popen(cmd, env=worker_env(os.environ, self.par), start_new_session=True)
        self.workers.append(_Worker(proc, f"w{self._n}"))
        self.report.started += 1

    def _fail_orphan_trial(self, study: optuna.Study, pid: int) -> None:
        """A worker died mid-trial: fail its trial now and enqueue one retry (as heartbeats would)."""
        marker = _trial_file(self.cfg, pid)
        if not marker.is_file():
            return
        with contextlib.suppress(ValueError, OSError, optuna.exceptions.UpdateFinishedTrialError):
            trial_id = int(marker.read_text().strip())
            storage = study._storage
            trial = storage.get_trial(trial_id)
            if trial.state == TrialState.RUNNING:
                storage.set_trial_user_attr(trial_id, "error", "worker process died")
                storage.set_trial_state_values(trial_id, TrialState.FAIL)
                RetryHeartbeatStaleTrialCallback(max_retry=1)(study, storage.get_trial(trial_id))
                self.report.retried_trials.append(trial.number)
        marker.unlink(missing_ok=True)

    def _reap(self, study: optuna.Study) -> None:
        for w in list(self.workers):
            rc = w.proc.poll()
            if rc is None:
                continue
            self.workers.remove(w)
            if rc == EXIT_RECYCLE:
                self.report.recycled += 1
            elif rc == EXIT_POISONED:
                self.report.poisoned += 1
                self._say(f"{w.name} stopped after a fatal CUDA error; replacing it")
            elif rc not in (EXIT_DONE, EXIT_INTERRUPTED):
                self.report.crashed += 1
                self._say(f"{w.name} (pid {w.proc.pid}) died with exit code {rc}; replacing it")
            self._fail_orphan_trial(study, w.proc.pid)

    def status_line(self, study: optuna.Study) -> str:
        from hpo.gpu import detect
        from hpo.tune import count_states

        c = count_states(study)
        done = finished_count(study)
        info = detect(0)
        gpu = (
            f" | GPU {info.used_bytes / 1024**3:.1f}/{info.total_bytes / 1024**3:.1f} GB"
            if info.available
            else ""
        )
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
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                study._storage.set_trial_user_attr(t._trial_id, "error", "stopped by Ctrl-C")
                study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)

    def run(self) -> LaunchReport:
        cfg = self.cfg
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C even when started in the background
        study = create_or_load(cfg)
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
                want = self.par if done < cfg.n_trials else 0
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
