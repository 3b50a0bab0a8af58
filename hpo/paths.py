"""Where the package, its shipped configs and its sample data live."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
# configs/ and data/ ship at the top level of the repository (editable install).
CONFIG_DIR = REPO_DIR / "configs"
SAMPLE_DATA_DIR = REPO_DIR / "data" / "sample"
ASSETS_DIR = PACKAGE_DIR / "assets"
