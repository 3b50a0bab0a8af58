"""Reading one YAML settings file: every problem is a one-line ConfigError naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hpo.errors import ConfigError


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, turning every problem into a one-line ConfigError."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}", "pass an existing YAML file with --config")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"malformed YAML in {path}{where}", "fix the YAML syntax") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} must hold a mapping of settings, not {type(data).__name__}",
            "see configs/studies/*.yaml for the format",
        )
    return data
