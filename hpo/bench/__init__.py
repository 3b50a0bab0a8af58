"""Scheduler benchmark core: a seeded trial mix and a discrete-event simulation of its schedules."""

from __future__ import annotations

from hpo.paths import CONFIG_DIR

DEFAULT_CONFIG = CONFIG_DIR / "studies" / "criteria-24gb.yaml"  # the shipped 24 GB study (base and large)
