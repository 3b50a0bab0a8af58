"""Leave-one-source-out validation of the estimate's allocator fit (hpo.bench.loso): prints the table as
Markdown (for the README) and, with --json PATH, writes it with the fitted allocators and held-out ratios.

    python scripts/bench_loso.py [--json runs/loso.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from hpo.bench.loso import DATA, NEVER_UNDER, Errors, describe, folds, held_out_ratios, loso_table
from hpo.device.allocator import DEFAULT_ALLOCATOR


def markdown(rows: Sequence[Errors]) -> str:
    """The table: error = estimate / measured - 1 per source and fit (allocator: transient / persistent /
    floor / eval_transient)."""
    head = "| source | fit | allocator | n | min | median | max | worst under | > 5 % under |"
    lines = [head, "|---|---|---|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        pct = (f"{x:+.1%}" for x in (r.min, r.median, r.max, r.worst_under))
        lines.append(
            f"| {r.source} | {r.fit} | {r.allocator} | {r.n} | {' | '.join(pct)} | {r.share_under_5:.0%} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Leave-one-source-out validation of the allocator fit.")
    parser.add_argument("--data", type=Path, default=DATA, help="tests/data (published and H200 peaks)")
    parser.add_argument("--json", type=Path, help="write the table, fits and held-out ratios as JSON")
    args = parser.parse_args(argv)
    rows, fits, ratios = loso_table(args.data), folds(args.data), held_out_ratios(args.data)
    print(
        f"Estimate / measured - 1 (device peaks with each row's own CUDA context; litgpt: allocated peaks). "
        f"Fit: grid over transient / persistent / floor / eval_transient, least median |error| with no "
        f"fitted row more than {NEVER_UNDER:.0%} under. Fitted on all three fitted sources: "
        f"{describe(fits['all'])} (shipped DEFAULT_ALLOCATOR: {describe(DEFAULT_ALLOCATOR)}).\n"
    )
    print(markdown(rows))
    print(
        f"\nHeld-out measured / estimated ({len(ratios)} rows, the scheduler benchmark's --error loso): "
        f"{min(ratios):.3f}..{max(ratios):.3f}, median {statistics.median(ratios):.3f}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "fits": {name: asdict(alloc) for name, alloc in fits.items()},
            "shipped": asdict(DEFAULT_ALLOCATOR),
            "never_under": NEVER_UNDER,
            "table": [asdict(r) for r in rows],
            "held_out_ratios": ratios,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
