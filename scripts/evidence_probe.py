"""Does the evidence agent beat the no-answer baseline on a sample? One config, its margins, in JSON.

    python scripts/evidence_probe.py [--model all-MiniLM-L6-v2] [--epochs 4] [--lr 2e-4] [--device cuda]
    python scripts/make_sample_data.py --out /tmp/s600 --no-vocab --n-posts 600    # a 4x larger sample
    python scripts/evidence_probe.py --data-dir /tmp/s600

Trains one config (hpo's loop, the agent's windows and head) and prints validation span F1 per epoch, the
no-answer baseline, and how the null decision ranks the validation pairs (hpo/bench/evidence.py).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path

from hpo.bench.evidence import Probe, run


def main(argv: Sequence[str] | None = None) -> int:
    """Run the probe and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d, add = Probe(), parser.add_argument  # the defaults are the Probe's
    add("--model", default=d.model)
    add("--data-dir", type=Path, default=d.data_dir)
    add("--epochs", type=int, default=d.epochs)
    add("--lr", type=float, default=d.learning_rate)
    add("--batch-size", type=int, default=d.batch_size)
    add("--max-length", type=int, default=d.max_length)
    add("--seed", type=int, default=d.seed)
    add("--threads", type=int, default=d.threads)
    add("--device", default=d.device)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    probe = Probe(
        model=args.model,
        data_dir=args.data_dir,
        epochs=args.epochs,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        max_length=args.max_length,
        seed=args.seed,
        threads=args.threads,
        device=args.device,
    )
    print(json.dumps(run(probe)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
