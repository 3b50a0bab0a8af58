"""Per-worker isolation: environment (allocator, tokenizers, threads) and a CUDA memory cap.

Each worker caps its caching allocator at its ledger reservation plus a margin, so a trial that outgrows its
estimate runs out of memory itself (and is pruned) instead of taking a neighbour down.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping

from hpo.errors import ConfigError

ALLOC_CONF_DEFAULT = "expandable_segments:True"
# torch >= 2.9 reads PYTORCH_ALLOC_CONF; PYTORCH_CUDA_ALLOC_CONF is its alias. We set the alias, which every
# supported torch honours (2.9.1 ignored expandable_segments under the new name, pytorch#183387), and leave
# both alone when the user set either.
ALLOC_CONF_VARS = ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
DEFAULT_MARGIN_BYTES = 512 * 2**20
# TEST HOOK (scripts/gpu_study.py's forced OOM): "trials=3;7,fraction=0.3" caps those trials' allocators at
# that fraction of their reservation, without margin, so they run out of memory for real. Both keys are
# required; unset (the default) it never fires.
FORCE_CAP_ENV = "HPO_TEST_FORCE_CAP"
_MIN_FRACTION = 1e-6


def available_cpus() -> int:
    """CPUs this process may run on (affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def worker_env(base: Mapping[str, str], par: int, cpu_count: int | None = None) -> dict[str, str]:
    """The environment of one of ``par`` worker processes, derived from ``base`` (usually os.environ).

    - PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True unless the user configured the allocator;
    - TOKENIZERS_PARALLELISM=false (tokenizer threads in parallel, forked workers oversubscribe or deadlock);
    - OMP/MKL/OpenBLAS threads = cpu_count // par (at least 1), or the user's value if that is smaller;
    - CUDA_DEVICE_ORDER=PCI_BUS_ID unless set, so torch's device indices match NVML's (ledger keys).
    """
    if par < 1:
        raise ValueError(f"par must be >= 1, got {par}")
    env = dict(base)
    if not any(env.get(var) for var in ALLOC_CONF_VARS):
        env["PYTORCH_CUDA_ALLOC_CONF"] = ALLOC_CONF_DEFAULT
    env["TOKENIZERS_PARALLELISM"] = "false"
    share = max(1, (cpu_count or available_cpus()) // par)
    for var in THREAD_VARS:
        user = _positive_int(env.get(var))
        env[var] = str(min(share, user) if user else share)
    env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    return env


def memory_fraction(
    reserved_bytes: int, total_bytes: int, margin_bytes: int, context_bytes: int = 0
) -> float:
    """Fraction of the device for the caching allocator: (reserved - context + margin) / total, in (0, 1].

    ``context_bytes`` is the CUDA context already counted in ``reserved_bytes`` (it lives outside the caching
    allocator, which the fraction limits); pass it to make the cap tight.
    """
    if total_bytes <= 0:
        raise ValueError(f"total_bytes must be > 0, got {total_bytes}")
    if min(reserved_bytes, margin_bytes, context_bytes) < 0:
        raise ValueError("reserved_bytes, margin_bytes and context_bytes must be >= 0")
    allowed = reserved_bytes - min(context_bytes, reserved_bytes) + margin_bytes
    return min(1.0, max(_MIN_FRACTION, allowed / total_bytes))


def apply_memory_cap(
    reserved_bytes: int, margin_bytes: int, device: int = 0, *, context_bytes: int = 0
) -> float | None:
    """Cap this process's CUDA caching allocator at its reservation plus a margin; None without CUDA.

    Allocations past the cap raise torch.OutOfMemoryError in this process only. Call it in the worker, after
    the reservation and before the model is loaded.
    """
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    total = int(torch.cuda.get_device_properties(device).total_memory)
    fraction = memory_fraction(reserved_bytes, total, margin_bytes, context_bytes)
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    return fraction


def forced_cap(
    trial: int, reserved_bytes: int, margin_bytes: int, env: Mapping[str, str] = os.environ
) -> tuple[int, int]:
    """(reservation, margin) for trial ``trial``'s cap: as given, unless the ``HPO_TEST_FORCE_CAP`` test
    hook names the trial (then a fraction of the reservation and no margin; said on stderr)."""
    raw = env.get(FORCE_CAP_ENV, "").strip()
    if not raw:
        return reserved_bytes, margin_bytes
    fix = f'e.g. {FORCE_CAP_ENV}="trials=3;7,fraction=0.3" (a test hook; unset it otherwise)'
    try:
        kv = dict((k.strip(), v.strip()) for k, _, v in (p.partition("=") for p in raw.split(",")))
        trials = {int(t) for t in kv["trials"].split(";") if t.strip()}
        fraction = float(kv["fraction"])
    except (KeyError, ValueError):
        raise ConfigError(f"malformed {FORCE_CAP_ENV}={raw!r}", fix) from None
    if not 0.0 < fraction < 1.0 or set(kv) != {"trials", "fraction"}:
        raise ConfigError(f"malformed {FORCE_CAP_ENV}={raw!r}: keys trials and fraction in (0, 1)", fix)
    if trial not in trials:
        return reserved_bytes, margin_bytes
    capped = int(reserved_bytes * fraction)
    print(f"{FORCE_CAP_ENV}: trial {trial} capped at {capped / 2**30:.2f} GiB (test hook)", file=sys.stderr)
    return capped, 0


def _positive_int(value: str | None) -> int:
    try:
        return max(0, int(str(value).strip()))
    except ValueError:
        return 0


def measure_context(
    default_bytes: int,
    process_bytes: Callable[[], int | None],
    reserved_bytes: Callable[[], int],
) -> int:
    """This worker's CUDA context: NVML's usage of the process less what the caching allocator holds, read
    once after CUDA is initialised; ``default_bytes`` (the GPU profile's) when NVML cannot tell."""
    used = process_bytes()
    if used is None or used <= reserved_bytes():
        return default_bytes
    return used - reserved_bytes()


def cuda_context_bytes(default_bytes: int) -> int:
    """Initialise CUDA in this process and measure its context (``measure_context`` on the real readers)."""
    import torch

    from hpo.device.gpu import process_memory_bytes

    if not torch.cuda.is_available():
        return default_bytes
    torch.zeros(1, device="cuda")  # creates the context (and one small allocator block)
    return measure_context(default_bytes, process_memory_bytes, torch.cuda.memory_reserved)
