"""A small card carved out of a big one, for real: a ballast process holds all but ``keep`` bytes of a GPU.

With the ballast running, an allocation past ``keep`` fails with a real CUDA out-of-memory error, as on a
card of that size, and ``hpo tune --gpu-memory`` is told the size (``scripts/gpu_study.py`` on an H200
emulates a 24 GB card this way). NVML then sees a foreign process holding most of the device: hpo sizes
the study by the configured card and what the foreign process leaves (``hpo.device.gpu.usable_card_bytes``).

The child (``python -m hpo.bench.ballast --keep-bytes N --ready FILE``) creates its CUDA context, allocates
the free memory less ``keep`` (topping up in chunks until free memory is within ``TOLERANCE`` of ``keep``),
writes what it holds as JSON to the ready file and holds it until its standard input closes: the parent's
``hold`` context closes it on exit, and so does the kernel when the parent dies, so the ballast never
outlives its study.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hpo.units import MIB

TOLERANCE = 64 * MIB  # free memory may exceed ``keep`` by this much (the allocator rounds blocks)
CHUNK = 256 * MIB  # top-up allocation size
MemInfo = Callable[[], tuple[int, int]]  # (free, total) bytes of the device, as torch.cuda.mem_get_info
Allocate = Callable[[int], Any]  # allocate and keep this many bytes on the device; returns the tensor


@dataclass(frozen=True)
class BallastInfo:
    """What the ballast holds: its pid, the bytes it allocated, the device's free and total bytes after."""

    pid: int
    held_bytes: int
    free_after_bytes: int
    total_bytes: int


def ballast_bytes(free_bytes: int, keep_bytes: int) -> int:
    """Bytes to allocate so that ``keep_bytes`` stay free; ValueError when the device has less free."""
    if keep_bytes <= 0:
        raise ValueError(f"keep_bytes must be > 0, got {keep_bytes}")
    if free_bytes < keep_bytes:
        raise ValueError(
            f"only {free_bytes / 2**30:.2f} GiB free on the device, fewer than the {keep_bytes / 2**30:.2f} "
            "GiB to keep: stop what else runs on it or keep less"
        )
    return free_bytes - keep_bytes


def carve(keep_bytes: int, mem_info: MemInfo, allocate: Allocate) -> tuple[list[Any], BallastInfo]:
    """Allocate until ``keep_bytes`` stay free (within ``TOLERANCE``); the blocks and what is held."""
    free, total = mem_info()
    held = ballast_bytes(free, keep_bytes)
    blocks = [allocate(held)] if held else []
    for _ in range(4096):  # the context and rounding leave a little more free than asked: top it up
        free, total = mem_info()
        extra = min(CHUNK, free - keep_bytes)
        if free - keep_bytes <= TOLERANCE or extra <= 0:
            break
        blocks.append(allocate(extra))
        held += extra
    free, total = mem_info()
    return blocks, BallastInfo(os.getpid(), held, free, total)


def _cuda_readers(device: int) -> tuple[MemInfo, Allocate]:
    import torch

    torch.cuda.set_device(device)
    torch.zeros(1, device="cuda")  # the CUDA context first, so that it is not counted in what is kept

    def mem_info() -> tuple[int, int]:
        free, total = torch.cuda.mem_get_info(device)
        return int(free), int(total)

    def allocate(nbytes: int) -> Any:
        return torch.empty(nbytes, dtype=torch.uint8, device=f"cuda:{device}")

    return mem_info, allocate


def main(argv: Sequence[str] | None = None) -> int:
    """The ballast child: carve the device, report, hold until standard input closes."""
    parser = argparse.ArgumentParser(description="Hold all but --keep-bytes of a CUDA device (module doc).")
    parser.add_argument("--keep-bytes", type=int, required=True)
    parser.add_argument("--device", type=int, default=0)
    parser.add_argument("--ready", type=Path, required=True, help="JSON written once the memory is held")
    args = parser.parse_args(argv)
    mem_info, allocate = _cuda_readers(args.device)
    blocks, info = carve(args.keep_bytes, mem_info, allocate)
    tmp = args.ready.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(info)))
    tmp.replace(args.ready)
    sys.stdin.read()  # hold until the parent closes our stdin (or dies)
    del blocks
    return 0


def cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


@contextmanager
def hold(keep_bytes: int, device: int = 0, timeout: float = 120.0) -> Iterator[BallastInfo | None]:
    """Run a ballast that leaves ``keep_bytes`` of CUDA ``device`` free for the block; None without CUDA.

    RuntimeError when the child fails or is not ready within ``timeout`` seconds (its stderr in the message).
    """
    if not cuda_available():
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="hpo-ballast-") as tmp:
        ready, log = Path(tmp) / "ready.json", Path(tmp) / "stderr.txt"
        cmd = [sys.executable, "-m", "hpo.bench.ballast", "--keep-bytes", str(keep_bytes)]
        cmd += ["--device", str(device), "--ready", str(ready)]
        with log.open("w") as err:
            child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=err)
        try:
            yield _wait_ready(child, ready, log, timeout)
        finally:
            if child.stdin is not None:
                child.stdin.close()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def _wait_ready(child: subprocess.Popen[bytes], ready: Path, log: Path, timeout: float) -> BallastInfo:
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"the ballast process did not hold the memory: {tail.strip() or 'timed out'}")
        time.sleep(0.1)
    return BallastInfo(**json.loads(ready.read_text()))


if __name__ == "__main__":
    raise SystemExit(main())
