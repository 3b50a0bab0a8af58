"""Write the SYNTHETIC support-ticket samples of the classify agent (generator: hpo/data/synth/classify.py).

python scripts/make_classify_sample.py                  # rewrite hpo/data/classify/*
python scripts/make_classify_sample.py --out /tmp/x --seed 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hpo.data.synth.classify import write_samples
from hpo.paths import PACKAGE_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PACKAGE_DIR / "data" / "classify")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    for path in write_samples(args.out, args.seed):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
