"""Where the package's shipped files live: configs, the synthetic sample data and the tiny model's assets.

They are package data, so a plain (non-editable) ``pip install .`` has them; the repository's top-level
``configs`` and ``data`` are links into the package for users browsing the checkout.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CONFIG_DIR = PACKAGE_DIR / "configs"
SAMPLE_DATA_DIR = PACKAGE_DIR / "data" / "sample"
ASSETS_DIR = PACKAGE_DIR / "assets"
