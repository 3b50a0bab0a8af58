"""Every exit code of the `hpo` command line, in one place."""

from __future__ import annotations

from hpo.run.protocol import WorkerExit

OK = 0
BAD_INPUT = 2  # an HpoError: one `error:` line naming the problem and the fix
POISONED = int(WorkerExit.POISONED)  # a fatal CUDA error stopped the run (rerun to resume)
PENDING_LEFT = 1  # `hpo sync-mlflow`: MLflow still refused some buffered writes (rerun it later)
INTERRUPTED = int(WorkerExit.INTERRUPTED)  # Ctrl-C / SIGTERM; finished trials are kept
# `hpo worker` exits with its WorkerExit (0 done, 3 poisoned, 10 recycle, 130 interrupted) for its launcher
