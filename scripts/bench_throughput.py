"""Training examples/s: hpo's loop vs HF Trainer (DataCollatorWithPadding) vs hpo with fixed padding.

    python scripts/bench_throughput.py [--quick] [--json] [--model all-MiniLM-L6-v2] [--max-length 256]

Same model, data (the shipped sample), batch, max_length, epochs and threads for every run; see
hpo/bench/throughput.py. Absolute numbers depend on the machine; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence

from hpo.bench.throughput import Setting, compare


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison and print a table (or one JSON object)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--model", default="all-MiniLM-L6-v2")
    add("--max-length", type=int, default=256)
    add("--batch-size", type=int, default=16)
    add("--epochs", type=int, default=2)
    add("--train-examples", type=int, default=400)
    add("--threads", type=int, default=2)
    add("--repeat", type=int, default=2, help="runs per setting (interleaved); the best is kept")
    add("--quick", action="store_true", help="1 epoch on 128 examples, once")
    add("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quick = {"epochs": 1, "train_examples": 128} if args.quick else {}
    setting = Setting(
        model=args.model,
        max_length=args.max_length,
        batch_size=args.batch_size,
        epochs=quick.get("epochs", args.epochs),
        train_examples=quick.get("train_examples", args.train_examples),
        threads=args.threads,
    )
    out = compare(setting, 1 if args.quick else args.repeat)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{setting}\n")
    for key in ("hpo", "hf_trainer", "hpo_fixed_padding"):
        print(f"{key:20s} {out[key]:8.1f} examples/s")
    ratios = out["ratio_vs_trainer"], out["ratio_vs_fixed_padding"]
    print(f"\nhpo / HF Trainer: {ratios[0]:.2f}x; hpo / fixed padding: {ratios[1]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
