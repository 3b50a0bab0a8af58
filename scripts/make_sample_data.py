"""Generate the SYNTHETIC ReDSM5-format sample (data/sample) and the tiny-bert WordPiece vocab.

    python scripts/make_sample_data.py                     # rewrite data/sample/*.csv and the vocab
    python scripts/make_sample_data.py --out /tmp/x --vocab /tmp/x/vocab.txt --seed 1
    python scripts/make_sample_data.py --out /tmp/s600 --no-vocab --n-posts 600   # 4x larger, same kind

The generator lives in hpo/data/synth/ (posts.py says what the sample imitates); this is its command line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hpo.data.synth.posts import N_POSTS
from hpo.data.synth.write import write_sample
from hpo.paths import ASSETS_DIR, SAMPLE_DATA_DIR


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=SAMPLE_DATA_DIR, help="folder for the two CSVs")
    parser.add_argument(
        "--vocab",
        type=Path,
        default=ASSETS_DIR / "tiny-bert" / "vocab.txt",
        help="where to write the tiny-bert vocab.txt",
    )
    parser.add_argument("--no-vocab", action="store_true", help="do not write the vocab")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--n-posts",
        type=int,
        default=N_POSTS,
        help=f"posts to generate (default {N_POSTS}); the first N of a larger sample are the N-post sample",
    )
    args = parser.parse_args(argv)
    stats = write_sample(args.out, None if args.no_vocab else args.vocab, args.seed, args.n_posts)
    if not args.no_vocab and args.vocab == ASSETS_DIR / "tiny-bert" / "vocab.txt":  # hpo-tiny-llama shares it
        (ASSETS_DIR / "tiny-llama" / "vocab.txt").write_text(args.vocab.read_text(encoding="utf-8"), "utf-8")
    share = 100 * stats["positives"] / stats["rows"]
    print(
        f"wrote {stats['rows']} annotation rows over {stats['posts']} posts ({share:.1f}% positive) "
        f"to {args.out}"
    )


if __name__ == "__main__":
    main()
