"""Memory units. "GB" means GiB (2**30 bytes) everywhere in hpo, as nvidia-smi and torch report them."""

from __future__ import annotations

import re

from hpo.errors import ConfigError

GIB = 1024**3
MIB = 1024**2
_UNITS = {
    "": GIB,
    "g": GIB,
    "gb": GIB,
    "gib": GIB,
    "m": MIB,
    "mb": MIB,
    "mib": MIB,
    "t": 1024**4,
    "tb": 1024**4,
    "tib": 1024**4,
}
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_memory(text: str, what: str = "GPU memory") -> int:
    """ "24GB", "24GiB", "24", "80 GB", "512MiB" -> bytes. GB means GiB; a bare number is GiB too."""
    match = _MEMORY.match(str(text))
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS or float(match.group(1)) <= 0:
        raise ConfigError(f"cannot read {what} '{text}'", "write it like 24GB, 40GiB or 80")
    return int(float(match.group(1)) * _UNITS[unit])


def gb(nbytes: float, digits: int = 3) -> float:
    """Bytes as GiB, rounded (how trials and MLflow record sizes)."""
    return round(nbytes / GIB, digits)


def human(nbytes: int) -> str:
    """A size for messages: GiB from 16 MiB up, else bytes."""
    return f"{nbytes / GIB:.2f} GiB" if nbytes >= 2**24 else f"{nbytes} bytes"


_SECONDS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``text``: a number of seconds, or a number with s, m or h (30s, 10m, 1.5h, 1h30m)."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        raw = str(text).strip().lower()
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smh]?)", raw)
        if not raw or re.sub(r"\s", "", "".join(n + u for n, u in parts)) != re.sub(r"\s", "", raw):
            raise ValueError(f"cannot read duration {text!r}: write it like 30s, 10m or 1h")
        seconds = sum(float(n) * _SECONDS[u or "s"] for n, u in parts)
    if seconds < 0:
        raise ValueError(f"duration {text!r} is negative")
    return seconds


def human_duration(seconds: float) -> str:
    """A duration for messages, as ``parse_duration`` reads it back: 12s, 5m, 1h30m."""
    s = round(seconds)
    if s < 120:
        return f"{s}s"
    h, m = divmod(s // 60, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m"
