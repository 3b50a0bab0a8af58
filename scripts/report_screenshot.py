"""Write a study's `hpo report` and a screenshot of it (headless Debian chromium) for the README.

    python scripts/report_screenshot.py --study criteria-demo --output-dir runs/demo --png docs/report.png

The study is read from ``sqlite:///<output-dir>/hpo.db`` (or ``--storage``); the report goes beside it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from hpo.config.study import storage_url
from hpo.results.report_html import show_report

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="criteria-demo")
    parser.add_argument("--output-dir", type=Path, default=Path("runs/demo"))
    parser.add_argument("--storage", default=None)
    parser.add_argument("--png", type=Path, default=Path("docs/report.png"))
    parser.add_argument("--size", default="1280,2600", help="window WIDTH,HEIGHT: the top of the page")
    args = parser.parse_args()
    report = show_report(args.study, storage_url(args.storage, args.output_dir), None, args.output_dir)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed (apt-get install -y chromium)")
    args.png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        cmd = [chromium, *ARGS, f"--user-data-dir={profile}", f"--window-size={args.size}"]
        cmd += ["--virtual-time-budget=10000", f"--screenshot={args.png.resolve()}"]
        subprocess.run([*cmd, report.resolve().as_uri()], check=True, capture_output=True, timeout=120)
    print(f"report: {report}\nscreenshot: {args.png.resolve()}")


if __name__ == "__main__":
    main()
