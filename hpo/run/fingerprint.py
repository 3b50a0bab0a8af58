"""What defines a study, stored on it at creation and compared on every resume.

The fingerprint holds every setting that changes what a trial computes, as hpo.config.fingerprint classifies
them (agent, models, seed, search space, epochs, patience, training-data cap, padding, batching...), the
metric, and the data by content (each file's SHA-256 and the number of examples). Resuming with a different
one is an error naming the field and the fix, before any trial can fail on a mismatched distribution. With
``--allow-changes`` the compatible changes (epochs, patience, a float range that only widens) go through and
are recorded on the study; ``--n-trials`` is the run's target, never part of the fingerprint.

A fingerprint stored before a setting joined it lacks that key: the study's stored config (or, failing
that, the setting's default) stands in for it, so old studies resume unchanged and are checked in full.
"""

from __future__ import annotations

import hashlib
import time
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from pydantic_core import to_jsonable_python

from hpo.config.fingerprint import fingerprinted
from hpo.config.study import SpaceConfig, StudyConfig
from hpo.errors import ConfigError
from hpo.run.setup import Setup
from hpo.storage.study import CONFIG_ATTR, public_config

FINGERPRINT_ATTR = "fingerprint"
DATA_FIELD = "data_dir"  # fingerprinted by content, as "data"
CHANGES_ATTR = "changes"
_COMPATIBLE = ("epochs", "patience")
# the search space's float ranges (low, high): widening one is compatible, any other space change is not
FLOAT_RANGES = frozenset(
    name for name, f in SpaceConfig.model_fields.items() if typing.get_origin(f.annotation) is tuple
)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_fingerprint(data_dir: Path, rows: int) -> dict[str, Any]:
    """SHA-256 of the data file (classify --data), or of each CSV and save_to_disk Arrow file in the
    ``data_dir`` folder, and the number of examples read from them."""
    path = Path(data_dir)
    if path.is_file():
        return {"files": {path.name: _sha256(path)}, "rows": rows}
    found = sorted([*path.glob("*.csv"), *path.glob("*.arrow"), *path.glob("*/*.arrow")])
    files = {p.relative_to(path).as_posix(): _sha256(p) for p in found}
    return {"files": files, "rows": rows}


def fingerprint(cfg: StudyConfig, setup: Setup) -> dict[str, Any]:
    """What defines the study ``cfg`` describes (JSON-able)."""
    settings = cfg.model_dump(mode="json")
    out: dict[str, Any] = {name: settings[name] for name in fingerprinted() if name != DATA_FIELD}
    out["metric"] = setup.agent.metric_name
    source = getattr(setup.agent, "source", None) or cfg.data_dir  # the file an agent read (classify)
    out["data"] = data_fingerprint(source, sum(setup.splits.sizes().values()))
    return out


def completed(old: dict[str, Any], stored_config: dict[str, Any] | None) -> dict[str, Any]:
    """``old`` with the fingerprinted settings it predates: the study's stored config's value, else the
    setting's default (what the runs that made the study used)."""
    full = dict(old)
    for name in fingerprinted():
        if name != DATA_FIELD and name not in full:
            if stored_config is not None and name in stored_config:
                full[name] = stored_config[name]
            else:
                default = StudyConfig.model_fields[name].get_default(call_default_factory=True)
                full[name] = to_jsonable_python(default)
    return full


@dataclass(frozen=True)
class Change:
    """One field that differs between the stored and the new fingerprint."""

    field: str
    old: Any
    new: Any
    compatible: bool


def _widens(old: Any, new: Any) -> bool:
    return (
        isinstance(old, list)
        and isinstance(new, list)
        and len(old) == len(new) == 2
        and all(isinstance(v, (int, float)) for v in old + new)
        and new[0] <= old[0]
        and new[1] >= old[1]
    )


def _default(name: str) -> Any:
    """A SpaceConfig field's default as the fingerprint stores it (None for an unknown field)."""
    return SpaceConfig().model_dump(mode="json").get(name)


def diff(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """The fields of ``new`` that differ from ``old`` (space and data field by field)."""
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if key == "space" and isinstance(a, dict) and isinstance(b, dict):
            for name in sorted(set(a) | set(b)):
                if name not in a and b.get(name) == _default(name):
                    continue  # a space field added after the study was made, at its default: same space
                if a.get(name) != b.get(name):
                    ok = name in FLOAT_RANGES and _widens(a.get(name), b.get(name))
                    changes.append(Change(f"space.{name}", a.get(name), b.get(name), ok))
        elif key == "data" and isinstance(a, dict) and isinstance(b, dict):
            if a.get("rows") != b.get("rows"):
                changes.append(Change("data rows", a.get("rows"), b.get("rows"), False))
            elif a.get("files") != b.get("files"):
                changed = sorted(
                    n for n in set(a["files"]) | set(b["files"]) if a["files"].get(n) != b["files"].get(n)
                )
                changes.append(Change("data files", ", ".join(changed), "changed content", False))
        elif a != b:
            changes.append(Change(key, a, b, key in _COMPATIBLE))
    return changes


def check_resume(
    study: optuna.Study, cfg: StudyConfig, setup: Setup, allow_changes: bool, *, joining: bool = False
) -> list[Change]:
    """Store the fingerprint on a new study; on a resume, refuse a different one (ConfigError) unless every
    change is compatible and ``allow_changes`` is set, then record the changes. Returns the changes.

    ``joining`` (a worker joining a running study): refuse incompatible changes only, record nothing."""
    new = fingerprint(cfg, setup)
    old = study.user_attrs.get(FINGERPRINT_ATTR)
    if old is None and joining:
        return []
    if old is None:  # a new study, or one made before fingerprints: this run defines it
        study.set_user_attr(FINGERPRINT_ATTR, new)
        return []
    full = completed(old, study.user_attrs.get(CONFIG_ATTR))
    changes = diff(full, new)
    if not changes:
        if full != old and not joining:  # stored before some settings joined: now stored in full
            study.set_user_attr(FINGERPRINT_ATTR, new)
        return []
    hard = [c for c in changes if not c.compatible]
    first = (hard or changes)[0]
    what = f"{first.field} was {first.old}, now {first.new}"
    more = f" (and {len(changes) - 1} more change(s))" if len(changes) > 1 else ""
    if hard:
        raise ConfigError(
            f"study '{cfg.study}' was created with different settings: {what}{more}",
            "pass a new --study name for the new settings, or rerun with the study's original ones",
        )
    if joining:
        return changes
    if not allow_changes:
        raise ConfigError(
            f"study '{cfg.study}' was created with different settings: {what}{more}",
            "pass --allow-changes to resume with them (recorded on the study), or a new --study name",
        )
    record = [{"field": c.field, "old": c.old, "new": c.new, "at": time.time()} for c in changes]
    study.set_user_attr(CHANGES_ATTR, list(study.user_attrs.get(CHANGES_ATTR, [])) + record)
    study.set_user_attr(FINGERPRINT_ATTR, new)
    study.set_user_attr(CONFIG_ATTR, public_config(cfg))
    return changes
