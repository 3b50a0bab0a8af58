"""One PAR worker process (the child side of ``hpo.run.launcher``): memory-aware admission and the trial loop.

A worker records its CUDA context in the per-GPU ledger for its whole life, then for each trial reserves the
trial's estimated peak before it loads a model (waiting while it would not fit beside the running trials),
caps its CUDA allocator at the reservation plus a margin, and releases on any exit path. It tells the
launcher which trial it runs through a marker file and how it ended through its exit code (``WorkerExit``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import optuna

from hpo.config.study import MLFLOW_URI_ENV, StudyConfig, load_config
from hpo.device.gpu import detect
from hpo.errors import HpoError
from hpo.lifecycle import die_with_parent, parent_alive, stop_on_signals
from hpo.progress import Progress
from hpo.redact import is_redacted
from hpo.run.bootstrap import open_for_worker
from hpo.run.host import make_host_admission
from hpo.run.isolation import apply_memory_cap, cuda_context_bytes, forced_cap
from hpo.run.ledger import Ledger
from hpo.run.liveness import HOST, slots_left
from hpo.run.placement import MultiGpuAdmission, gpu_count, gpu_ledgers, home_gpu
from hpo.run.protocol import WorkerExit, WorkerId, trial_file, write_marker
from hpo.run.reservations import Reservation, ledger_path_for
from hpo.run.serial import fail_on_disk_full, run_one
from hpo.run.setup import build_objective, memory_policy, prepare
from hpo.storage import retry as storage_retry
from hpo.storage.dbcheck import is_disk_full
from hpo.storage.retry import down_error
from hpo.storage.study import CONFIG_ATTR, load_existing, seed_sampler
from hpo.trial import keys as K
from hpo.trial.admission import no_admission, no_host_admission
from hpo.trial.sizing import MemoryPolicy

CAP_MARGIN_BYTES = 512 * 1024**2
STOP_DEADLINE_S = 10  # a stopped worker fails its trial and exits; past this the kernel ends it (SIGALRM)
LEFT_TRIAL = "its trial is failed; if the storage missed that, the next hpo tune start fails it"


def worker_config(
    study: str,
    storage_url: str,
    output_dir: Path | None,
    config: Path | None,
    config_json: Path | None,
    mlflow_uri: str | None = None,
) -> StudyConfig:
    """A worker's study config: the launcher's resolved file, else a study YAML, else the one stored with the
    study by `hpo tune` (a worker started by hand in another shell or on another host). ``mlflow_uri``
    (``--mlflow-uri``) overrides the stored one; a stored one whose password was redacted must come from
    --mlflow-uri or HPO_MLFLOW_URI."""
    if config_json is not None:
        cfg = StudyConfig.model_validate_json(config_json.read_text())
    elif config is not None:
        over = {"study": study, "storage": storage_url, "output_dir": output_dir, "mlflow_uri": mlflow_uri}
        cfg = load_config(config, {k: v for k, v in over.items() if v is not None})
    else:
        stored = dict(load_existing(study, storage_url).user_attrs.get(CONFIG_ATTR) or {})
        # this host's GPUs, not those of the host that created the study
        stored.update({"study": study, "storage": storage_url, "gpus": None})
        if output_dir is not None:
            stored["output_dir"] = str(output_dir)
        if mlflow_uri is not None:
            stored["mlflow_uri"] = mlflow_uri
        cfg = StudyConfig.model_validate(stored)
    if cfg.mlflow and is_redacted(cfg.mlflow_uri):
        raise HpoError(
            f"the study logs to MLflow at {cfg.mlflow_uri}, whose password is not stored",
            f"pass it by environment: {MLFLOW_URI_ENV}=URI hpo worker ... (or --mlflow-uri)",
        )
    return cfg


class LedgerAdmission:
    """Ledger-backed admission for one worker process (an ``hpo.trial.admission.Admission``).

    ``start()`` records the worker's CUDA context in the ledger (it stays on the card while the worker waits);
    each trial then reserves its estimated device total less that context, waiting until it fits (or, after
    ``lighter_after`` seconds, until one of its lighter equivalent forms fits: hpo.trial.elastic), caps the
    CUDA allocator at the reservation plus ``margin`` and releases on any exit path. ``close()`` gives the
    context back when the worker exits (the ledger reclaims it anyway if the worker dies).
    """

    def __init__(
        self,
        ledger: Ledger,
        context_bytes: int,
        margin_bytes: int,
        lighter_after: float = 60.0,
        timeout: float | None = None,
    ) -> None:
        self.ledger, self.context_bytes, self.margin_bytes = ledger, context_bytes, margin_bytes
        self.lighter_after, self.timeout = lighter_after, timeout
        self._hold: Reservation | None = None

    @property
    def placed_gpu(self) -> str:
        """The ledger key of the one GPU every trial of this worker runs on (recorded on the trial)."""
        return self.ledger.gpu_key

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
            first,
            trial=trial,
            label=label,
            lighter=lighter,
            lighter_after=self.lighter_after,
            timeout=self.timeout,  # LedgerTimeout: the trial is pruned (admission_timeout)
        ) as res:
            # the context lives outside the caching allocator, which the cap limits
            apply_memory_cap(*forced_cap(trial, res.bytes, self.margin_bytes))
            yield res.form


class MarkerProgress(Progress):
    """Plain progress lines that also tell the launcher the trial's phase (in the marker file), so a death
    is recorded with what the worker was doing."""

    def __init__(self, marker: Path, every_s: float = 2.0) -> None:
        super().__init__(live=False)
        self.marker, self.every_s, self._last = marker, every_s, 0.0

    def trial_started(self, number: int, summary: str) -> None:
        super().trial_started(number, summary)
        write_marker(self.marker, number, "loading data and model")

    def step(self, number: int, epoch: int, epochs: int, step: int, steps: int) -> None:
        now = time.monotonic()
        if step == 0 or now - self._last >= self.every_s:
            self._last = now
            write_marker(self.marker, number, f"training epoch {epoch + 1}/{epochs} step {step + 1}/{steps}")

    def epoch(self, number: int, epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        super().epoch(number, epoch, epochs, metrics)
        write_marker(self.marker, number, f"after evaluating epoch {epoch + 1}/{epochs}")


def make_admission(
    cfg: StudyConfig, policy: MemoryPolicy, gpu_key: str, slot: int = 0
) -> LedgerAdmission | MultiGpuAdmission | None:
    """The worker's ledger admission (several GPUs: hpo.run.placement), or None without a GPU budget (a
    plain CPU run admits everything)."""
    if policy.gpu_bytes is None:
        return None
    if gpu_count(cfg) > 1:
        ledgers = gpu_ledgers(cfg, policy, policy.simulated)
        margin = min(CAP_MARGIN_BYTES, policy.headroom_bytes // max(1, cfg.par))
        return MultiGpuAdmission(
            ledgers,
            home_gpu(slot, len(ledgers)),
            policy.allocator.context_bytes,
            margin,
            cfg.elastic_after_s,
            cfg.admission_timeout_s,
        )
    ledger = Ledger(
        ledger_path_for(cfg.storage_url, cfg.output_dir),
        gpu_key,
        max(0, policy.gpu_bytes - policy.headroom_bytes),
        poll_interval=0.5,
    )
    # the caps of all workers together may overshoot their reservations by at most the headroom
    margin = min(CAP_MARGIN_BYTES, policy.headroom_bytes // max(1, cfg.par))
    context = policy.allocator.context_bytes
    return LedgerAdmission(ledger, context, margin, cfg.elastic_after_s, cfg.admission_timeout_s)


def run_worker(
    cfg: StudyConfig,
    *,
    recycle_after: int,
    worker: WorkerId | None = None,
    launcher_pid: int | None = None,
) -> WorkerExit:
    """Run trials until the study target is reached, K trials were run or CUDA is poisoned.

    ``worker`` (from the launcher) seeds this process's sampler apart from every other worker's; with
    ``launcher_pid`` the worker stops, failing its trial, as soon as that launcher dies.
    """

    def why(signum: int) -> str:
        # the parent-death signal may arrive before this process is re-parented: give it a moment
        deadline = time.monotonic() + 0.5
        while launcher_pid is not None and signum == signal.SIGTERM and time.monotonic() < deadline:
            if not parent_alive(launcher_pid):
                return f"launcher (pid {launcher_pid}) died"
            time.sleep(0.05)
        return f"stopped by {signal.Signals(signum).name}"

    stop_on_signals(why, deadline_s=STOP_DEADLINE_S)
    # a launcher's worker: the storage worked before it started, a failure is an outage to wait out
    storage_retry.configure(cfg.storage_retry_s, assume_up=launcher_pid is not None)
    if launcher_pid is not None:
        die_with_parent(launcher_pid)
    try:
        # a worker started by hand: its pid tells it apart from the workers of other shells
        return _trial_loop(cfg, recycle_after, worker or WorkerId(slot=os.getpid()))
    except KeyboardInterrupt as exc:
        if launcher_pid is None or not parent_alive(launcher_pid):  # else the launcher tells the user
            print(f"[worker {worker or os.getpid()}] {exc}: exiting ({LEFT_TRIAL})", file=sys.stderr)
        return WorkerExit.INTERRUPTED


def _trial_loop(cfg: StudyConfig, recycle_after: int, worker: WorkerId) -> WorkerExit:
    setup = prepare(cfg)
    policy = memory_policy(cfg, setup.device, setup.space.profile)
    if setup.device.type == "cuda" and not policy.simulated:  # this worker's own context, measured once
        measured = cuda_context_bytes(policy.allocator.context_bytes)
        policy.allocator = replace(policy.allocator, context_bytes=measured)
    info = detect(0)
    key = info.uuid if info.available else f"simulated-{policy.gpu_bytes}"
    # --admission none (a benchmark baseline): no ledger, hence no allocator cap and no host-RAM admission
    ledger = cfg.admission == "ledger"
    admission = make_admission(cfg, policy, key, worker.slot) if ledger else None
    if admission is not None:
        # every other worker's CUDA context stays on the card: a trial must fit beside them
        policy.resident_bytes = (cfg.par - 1) * policy.allocator.context_bytes
        policy.capped = True  # LedgerAdmission caps the allocator at each trial's reservation
        admission.start()
    marker = trial_file(cfg, os.getpid())
    marker.parent.mkdir(parents=True, exist_ok=True)

    def on_start(trial: optuna.Trial) -> None:
        write_marker(marker, trial.number, "sampling")
        trial.set_user_attr(K.HOST, HOST)  # its process, first: a launcher finds the trial of a dead worker
        trial.set_user_attr(K.PID, os.getpid())

    study, tracker = open_for_worker(cfg, setup)  # the launcher set them up; a worker creates nothing
    host = make_host_admission(cfg) if ledger else None
    if host is not None:
        host.start()
    objective = build_objective(
        cfg,
        MarkerProgress(marker),
        setup=setup,
        tracker=tracker,
        policy=policy,
        admission=admission or no_admission,
        host_admission=host or no_host_admission,
        on_start=on_start,
    )
    objective.worker = str(worker)
    objective.sampler_seed = seed_sampler(study, cfg, worker.slot + 1, worker.generation)
    done = 0
    try:
        while done < recycle_after:
            if not slots_left(study, cfg.n_trials):  # finished + live RUNNING (hpo.run.liveness)
                return WorkerExit.DONE
            run_one(study, objective)
            marker.unlink(missing_ok=True)
            done += 1
            if objective.poisoned:
                return WorkerExit.POISONED
            if objective.disk_full:
                return WorkerExit.DISK_FULL
        return WorkerExit.RECYCLE
    except Exception as exc:  # a storage write (Optuna's own) failed on a full disk
        if down_error() is not None:  # unreachable past --storage-retry; the launcher fails the trial later
            return WorkerExit.STORAGE_DOWN
        if not is_disk_full(exc):
            raise
        fail_on_disk_full(study, objective, str(exc).splitlines()[0][:200])
        return WorkerExit.DISK_FULL
    finally:
        marker.unlink(missing_ok=True)
        tracker.flush()  # MLflow writes buffered while MLflow was unavailable
        if host is not None:
            host.close()
        if admission is not None:
            admission.close()
