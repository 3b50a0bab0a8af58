"""Emulate a smaller card on a CUDA GPU: hold all but --keep of it until Ctrl-C (hpo.bench.ballast).

python scripts/gpu_ballast.py --keep 24GB [--device 0]
# in another shell: hpo tune --gpu-memory 24GB ...
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
from collections.abc import Sequence
from dataclasses import asdict

from hpo.bench.ballast import hold
from hpo.units import parse_memory


def main(argv: Sequence[str] | None = None) -> int:
    """Hold the ballast and print what it holds as one JSON line; exit 1 without CUDA."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", default="24GB", help="memory left free on the device (the emulated card)")
    parser.add_argument("--device", type=int, default=0)
    args = parser.parse_args(argv)
    with hold(parse_memory(args.keep), args.device) as info:
        if info is None:
            print(json.dumps({"error": "no CUDA device: nothing to hold"}))
            return 1
        print(json.dumps(asdict(info)), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
