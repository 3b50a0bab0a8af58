"""Every exit code of the `hpo` command line, in one place."""

from __future__ import annotations

from hpo.run.protocol import WorkerExit

OK = 0
BAD_INPUT = 2  # an HpoError: one `error:` line naming the problem and the fix
CRASH_LOOP = 4  # --par: workers kept dying without a trial finishing; the study is intact (rerun to resume)
POISONED = int(WorkerExit.POISONED)  # a fatal CUDA error stopped the run (rerun to resume)
STORAGE_DOWN = int(WorkerExit.STORAGE_DOWN)  # 75 (EX_TEMPFAIL): the storage stayed unreachable past
# --storage-retry; one `error:` line, finished trials are kept, rerun the same command once it is back
DOES_NOT_FIT = 1  # `hpo estimate`: the configuration does not fit the card (the table says so); for scripts
PENDING_LEFT = 1  # `hpo sync-mlflow`: MLflow still refused some buffered writes (rerun it later)
INTERRUPTED = int(WorkerExit.INTERRUPTED)  # Ctrl-C (SIGINT); finished trials are kept
TERMINATED = 143  # SIGTERM (timeout, Slurm, Kubernetes, systemd); finished trials are kept


def for_signal(signum: int | None) -> int:
    """The exit code of a run stopped by ``signum``: 128 + signal, as a shell reports it (130, 143)."""
    return 128 + signum if signum else INTERRUPTED


# `hpo worker` exits with its WorkerExit for its launcher: 0 done, 3 poisoned, 10 recycle, 28 disk full,
# 75 storage unreachable, 130 interrupted
