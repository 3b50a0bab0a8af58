"""Several GPUs on one host (`hpo tune --gpus 0,1,...`): which GPU a trial runs on, admitted per GPU.

Every GPU has its own memory ledger (keyed by its NVML UUID; ``simulated-<bytes>-gpu<i>`` for cards simulated
on CPU with ``--gpu-memory``). Each worker sees the selected GPUs and has a home GPU (its slot modulo their
number) where it records its CUDA context at start. A trial is placed on the first GPU, home first and then in
``--gpus`` order, whose ledger admits it now: a trial too big for one GPU's free room goes to another instead
of waiting. The first trial a worker runs on another GPU also reserves the context it creates there, which
stays recorded while the worker lives. No GPU is ever over-committed: each reservation is admitted by that
GPU's ledger under its file lock.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence

from hpo.config.study import StudyConfig
from hpo.device.gpu import detect, foreign_from_env, usable_card_bytes
from hpo.run.isolation import apply_memory_cap
from hpo.run.ledger import Ledger, LedgerTimeout, LedgerTooLarge
from hpo.run.reservations import Reservation, ledger_path_for
from hpo.trial.sizing import MemoryPolicy
from hpo.units import human, parse_memory


def visible_gpus(requested: Sequence[int] | None, count: int) -> list[int]:
    """The GPU indices to use: ``requested`` (``--gpus``), else all ``count`` visible ones (at least one)."""
    if requested:
        return list(requested)
    return list(range(max(1, count)))


def gpu_count(cfg: StudyConfig) -> int:
    """How many GPUs a study's host uses: ``--gpus``, else every visible CUDA device, else one (simulated)."""
    if cfg.gpus:
        return len(cfg.gpus)
    try:
        import torch

        return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1
    except ImportError:
        return 1


def cuda_visible(cfg: StudyConfig, current: str | None) -> str | None:
    """CUDA_VISIBLE_DEVICES for the workers: the ``--gpus`` selection (mapped through ``current``, the
    launcher's own value), or None to leave it as it is."""
    if not cfg.gpus:
        return None
    base = [d.strip() for d in current.split(",")] if current else None
    return ",".join(base[g] if base and g < len(base) else str(g) for g in cfg.gpus)


def gpu_ledgers(cfg: StudyConfig, policy: MemoryPolicy, simulated: bool) -> list[Ledger]:
    """One ledger per selected GPU: keyed by NVML UUID (a real card; its own total), or
    ``simulated-<bytes>-gpu<i>`` (``--gpu-memory`` per simulated card)."""
    path = ledger_path_for(cfg.storage_url, cfg.output_dir)
    ledgers = []
    for pos in range(gpu_count(cfg)):
        if simulated:
            key, total = f"simulated-{policy.gpu_bytes}-gpu{(cfg.gpus or [pos])[pos]}", policy.gpu_bytes or 0
        else:  # the configured card, never more than other processes left of the device at the start
            info = detect(pos)
            configured = parse_memory(cfg.gpu_memory) if cfg.gpu_memory else None
            key, total = (
                info.uuid or f"gpu{pos}",
                usable_card_bytes(info.total_bytes, foreign_from_env(pos), configured),
            )
        ledgers.append(Ledger(path, key, max(0, total - policy.headroom_bytes), poll_interval=0.5))
    return ledgers


def home_gpu(slot: int, n_gpus: int) -> int:
    """The position (in ``--gpus``) of the GPU worker ``slot`` starts on: slots spread round-robin."""
    return slot % max(1, n_gpus)


class MultiGpuAdmission:
    """Ledger admission over the GPUs of one host (an ``hpo.trial.admission.Admission``).

    ``ledgers[i]`` is the ledger of the i-th selected GPU (torch index ``i`` inside the worker, whose
    CUDA_VISIBLE_DEVICES lists the selected GPUs). ``placed`` is the position of the GPU the current trial
    runs on; ``select`` makes it the current CUDA device (torch.cuda.set_device on a real card).
    """

    def __init__(
        self,
        ledgers: Sequence[Ledger],
        home: int,
        context_bytes: int,
        margin_bytes: int,
        lighter_after: float = 60.0,
        timeout: float | None = None,
        *,
        poll_interval: float = 0.5,
        select: Callable[[int], None] | None = None,
    ) -> None:
        self.ledgers, self.home = list(ledgers), home
        self.context_bytes, self.margin_bytes = context_bytes, margin_bytes
        self.lighter_after, self.timeout, self.poll_interval = lighter_after, timeout, poll_interval
        self.select = select or _set_cuda_device
        self._holds: dict[int, Reservation] = {}
        self.placed: int | None = None

    @property
    def placed_gpu(self) -> str | None:
        """The ledger key (NVML UUID or ``simulated-<bytes>-gpu<i>``) of the GPU the current trial runs on."""
        return None if self.placed is None else self.ledgers[self.placed].gpu_key

    def order(self) -> list[int]:
        """Home GPU first, then the others in ``--gpus`` order."""
        return [self.home] + [i for i in range(len(self.ledgers)) if i != self.home]

    def start(self) -> None:
        self._hold(self.home)

    def _hold(self, gpu: int) -> None:
        label = f"worker pid {os.getpid()} context"
        self._holds[gpu] = self.ledgers[gpu].hold_process(self.context_bytes, label=label)

    def close(self) -> None:
        for gpu, res in list(self._holds.items()):
            self.ledgers[gpu].release(res)
        self._holds.clear()

    def place(self, sizes: Sequence[int], trial: int | None = None) -> tuple[int, Reservation]:
        """Reserve room for the trial on the first GPU that admits it (waiting while none does); returns the
        GPU's position and the reservation (``Reservation.form``: which of ``sizes`` it holds)."""
        # an estimate's device total includes the context, which is already on the home card
        forms = [max(0, n - self.context_bytes) for n in sizes]
        label = f"worker pid {os.getpid()}"
        start = time.monotonic()
        while True:
            eligible = len(forms) if time.monotonic() - start >= self.lighter_after else 1
            possible = 0
            for gpu in self.order():
                ledger = self.ledgers[gpu]
                extra = 0 if gpu in self._holds else self.context_bytes  # a new context on that card
                options = [n + extra for n in forms]
                if min(options) + ledger.resident() > ledger.capacity_bytes:
                    continue  # never fits beside the workers of that card
                possible += 1
                res = ledger.try_forms(options, eligible, trial=trial, label=label)
                if res is not None:
                    return gpu, res
            if not possible:
                raise LedgerTooLarge(
                    f"trial needs {human(min(forms))} but no GPU's memory budget has room for it beside "
                    "its workers",
                    "shrink the trial (batch size, max length, precision, checkpointing) or lower PAR",
                )
            if self.timeout is not None and time.monotonic() - start >= self.timeout:
                raise LedgerTimeout(
                    f"no room for {human(forms[0])} on any of {len(self.ledgers)} GPUs after "
                    f"{self.timeout:.1f} s",
                    "raise the timeout or lower PAR",
                )
            time.sleep(self.poll_interval * random.uniform(0.5, 1.0))

    @contextlib.contextmanager
    def __call__(self, sizes: Sequence[int], trial: int) -> Iterator[int]:
        """Hold room on the chosen GPU for the first form in ``sizes`` that fits; yields its index."""
        gpu, res = self.place(sizes, trial)
        try:
            self.placed = gpu
            self.select(gpu)
            new_context = gpu not in self._holds
            trial_bytes = res.bytes - (self.context_bytes if new_context else 0)
            apply_memory_cap(trial_bytes, self.margin_bytes, device=gpu)
            yield res.form
        finally:
            self.ledgers[gpu].release(res)
            if gpu not in self._holds:  # the context created there stays while this worker lives
                self._hold(gpu)


def _set_cuda_device(gpu: int) -> None:
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available() and gpu < torch.cuda.device_count():
        torch.cuda.set_device(gpu)
