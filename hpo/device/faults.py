"""Fault injection: drive the real OOM and fatal-CUDA-error paths on a CPU-only machine.

Environment (both optional; unset or empty means no fault):

- ``HPO_INJECT_OOM``: comma-separated ``key=value``: ``epoch``, ``step`` (where to fire), ``p`` (probability
  that a trial fires at all, decided once per trial from ``seed + trial_number``), ``seed``, ``trials``
  (``;``-separated trial numbers; other trials never fire). Examples: ``epoch=1,step=3``, ``p=0.3,seed=7``,
  ``epoch=0,step=0,trials=1;4``.
- ``HPO_INJECT_FATAL``: ``epoch``, ``step`` and optionally ``trials``: raise an illegal-memory-access error.
- ``HPO_INJECT_ENOSPC``: ``epoch``, ``step``: raise ``OSError(ENOSPC)`` (disk full) in every trial there.
- ``HPO_INJECT_KILL``: ``epoch``, ``step`` and optionally ``trials``: the process sends itself SIGKILL, as
  the kernel's OOM killer would (for tests of worker deaths; every trial when ``trials`` is not given).
- ``HPO_INJECT_ERROR``: ``epoch``, ``step``: raise a plain ``RuntimeError`` there in every trial (a bug that
  fails each trial the same way: for tests of the repeated-failure breaker).

The training loop calls ``check(epoch, step)`` before each micro-batch, ``step`` being the 0-based
micro-batch index within the epoch. A fault fires at the first check at or after its (epoch, step)
(an unset epoch or step means 0), so it fires even if the epoch is shorter than planned. An OOM fires once
per ``FaultInjector``: keep one injector per trial across shrink attempts so the retry can succeed. A fatal
error is sticky like a poisoned CUDA context: every later check raises it again.

``SimulatedGpu`` backs ``--gpu-memory 24GB`` when no CUDA device exists: a trial whose estimated peak
exceeds the simulated card raises the real OOM type at its first step.
"""

from __future__ import annotations

import errno
import os
import random
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hpo.errors import ConfigError
from hpo.units import GIB

OOM_ENV = "HPO_INJECT_OOM"
FATAL_ENV = "HPO_INJECT_FATAL"
ENOSPC_ENV = "HPO_INJECT_ENOSPC"
KILL_ENV = "HPO_INJECT_KILL"
ERROR_ENV = "HPO_INJECT_ERROR"
_FIX = "use e.g. HPO_INJECT_OOM='epoch=1,step=3', 'p=0.3,seed=7' or 'epoch=0,step=0,trials=1;4'"
_RANDOM_STEPS = 4  # with p and no step, the step is drawn from 0..3


@dataclass(frozen=True)
class FaultPlan:
    """Where and how often to inject faults; ``trials`` limits them to those trial numbers."""

    oom_epoch: int | None = None
    oom_step: int | None = None
    oom_probability: float = 0.0
    fatal_epoch: int | None = None
    fatal_step: int | None = None
    kill_epoch: int | None = None
    kill_step: int | None = None
    seed: int = 0
    trials: frozenset[int] | None = None
    enospc_epoch: int | None = None
    enospc_step: int | None = None
    error_epoch: int | None = None
    error_step: int | None = None

    def __post_init__(self) -> None:
        names = ("oom_epoch", "oom_step", "fatal_epoch", "fatal_step", "kill_epoch", "kill_step")
        for name in (*names, "enospc_epoch", "enospc_step", "error_epoch", "error_step"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ConfigError(f"fault plan: {name} must be an integer >= 0, got {value!r}", _FIX)
        if not 0.0 <= self.oom_probability <= 1.0:
            raise ConfigError(f"fault plan: p must be in [0, 1], got {self.oom_probability!r}", _FIX)

    @property
    def has_oom(self) -> bool:
        return self.oom_probability > 0 or self.oom_epoch is not None or self.oom_step is not None

    @property
    def has_fatal(self) -> bool:
        return self.fatal_epoch is not None or self.fatal_step is not None

    @property
    def has_kill(self) -> bool:
        return self.kill_epoch is not None or self.kill_step is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> FaultPlan | None:
        """Parse ``HPO_INJECT_OOM`` / ``_FATAL`` / ``_KILL`` / ``_ENOSPC`` / ``_ERROR``; None if none is."""
        oom_raw, fatal_raw = env.get(OOM_ENV, "").strip(), env.get(FATAL_ENV, "").strip()
        kill_raw, enospc_raw = env.get(KILL_ENV, "").strip(), env.get(ENOSPC_ENV, "").strip()
        error_raw = env.get(ERROR_ENV, "").strip()
        if not oom_raw and not fatal_raw and not kill_raw and not enospc_raw and not error_raw:
            return None
        d: dict[str, Any] = {}
        if error_raw:
            kv = _parse(ERROR_ENV, error_raw, {"epoch", "step"})
            d.update(error_epoch=kv.get("epoch", 0), error_step=kv.get("step", 0))
        if enospc_raw:
            kv = _parse(ENOSPC_ENV, enospc_raw, {"epoch", "step"})
            d.update(enospc_epoch=kv.get("epoch", 0), enospc_step=kv.get("step", 0))
        if oom_raw:
            kv = _parse(OOM_ENV, oom_raw, {"epoch", "step", "p", "seed", "trials"})
            d.update(oom_epoch=kv.get("epoch"), oom_step=kv.get("step"), seed=kv.get("seed", 0))
            d["oom_probability"] = kv.get("p", 0.0)
            d["trials"] = kv.get("trials")
        for var, raw, prefix in ((FATAL_ENV, fatal_raw, "fatal"), (KILL_ENV, kill_raw, "kill")):
            if not raw:
                continue
            kv = _parse(var, raw, {"epoch", "step", "trials"})
            d.update({f"{prefix}_epoch": kv.get("epoch", 0), f"{prefix}_step": kv.get("step", 0)})
            if "trials" in kv:
                if d.get("trials") is not None and d["trials"] != kv["trials"]:
                    raise ConfigError(f"{OOM_ENV}, {FATAL_ENV} and {KILL_ENV} name different trials", _FIX)
                d["trials"] = kv["trials"]
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FaultPlan:
        """Build from field names (``trials`` may be any iterable of ints); unknown keys -> ConfigError."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(
                f"fault plan: unknown key(s) {', '.join(unknown)}", f"known keys: {', '.join(sorted(known))}"
            )
        kwargs = dict(d)
        trials = kwargs.get("trials")
        try:
            if trials is not None:
                kwargs["trials"] = frozenset(int(t) for t in trials)
            kwargs["oom_probability"] = float(kwargs.get("oom_probability", 0.0))
            kwargs["seed"] = int(kwargs.get("seed", 0))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"fault plan: bad value ({exc})", _FIX) from exc
        return cls(**kwargs)


def _parse(var: str, raw: str, allowed: set[str]) -> dict[str, Any]:
    """``"a=1,b=2"`` -> typed dict; any problem -> one-line ConfigError naming the variable."""
    out: dict[str, Any] = {}
    for part in raw.split(","):
        key, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not key or not value:
            raise ConfigError(f"malformed {var}={raw!r}: expected key=value, got {part.strip()!r}", _FIX)
        if key not in allowed:
            raise ConfigError(
                f"malformed {var}={raw!r}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})", _FIX
            )
        try:
            if key == "p":
                out[key] = float(value)
            elif key == "trials":
                out[key] = frozenset(int(t) for t in value.split(";") if t.strip())
            else:
                out[key] = int(value)
        except ValueError:
            raise ConfigError(f"malformed {var}={raw!r}: bad value for {key}: {value!r}", _FIX) from None
    return out


class FaultInjector:
    """Raises the planned faults for one trial; a no-op without a plan or for unlisted trials."""

    def __init__(self, plan: FaultPlan | None, trial_number: int) -> None:
        self.plan = plan
        self.trial_number = trial_number
        self.oom_at: tuple[int, int] | None = None
        self.fatal_at: tuple[int, int] | None = None
        self.kill_at: tuple[int, int] | None = None
        self._fatal_fired = False
        self.enospc_at: tuple[int, int] | None = None
        if plan is not None and plan.enospc_epoch is not None:
            self.enospc_at = (plan.enospc_epoch, plan.enospc_step or 0)
        self.error_at: tuple[int, int] | None = None
        if plan is not None and plan.error_epoch is not None:
            self.error_at = (plan.error_epoch, plan.error_step or 0)
        if plan is None or (plan.trials is not None and trial_number not in plan.trials):
            return
        if plan.has_fatal:
            self.fatal_at = (plan.fatal_epoch or 0, plan.fatal_step or 0)
        if plan.has_kill:
            self.kill_at = (plan.kill_epoch or 0, plan.kill_step or 0)
        if not plan.has_oom:
            return
        if plan.oom_probability > 0:
            rng = random.Random(plan.seed + trial_number)
            fires = rng.random() < plan.oom_probability
            step = plan.oom_step if plan.oom_step is not None else rng.randrange(_RANDOM_STEPS)
            if fires:
                self.oom_at = (plan.oom_epoch or 0, step)
        else:
            self.oom_at = (plan.oom_epoch or 0, plan.oom_step or 0)

    def check(self, epoch: int, step: int) -> None:
        """Raise the planned fault if (epoch, step) has reached it."""
        import torch

        here = (epoch, step)
        if self.enospc_at is not None and here >= self.enospc_at:
            raise OSError(errno.ENOSPC, f"No space left on device (injected at epoch {epoch}, step {step})")
        if self.error_at is not None and here >= self.error_at:
            raise RuntimeError(f"injected error ({ERROR_ENV}) at epoch {epoch}, step {step}")
        if self.kill_at is not None and here >= self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.fatal_at is not None and (self._fatal_fired or here >= self.fatal_at):
            self._fatal_fired = True
            raise RuntimeError("CUDA error: an illegal memory access was encountered (injected)")
        if self.oom_at is not None and here >= self.oom_at:
            self.oom_at = None
            raise torch.cuda.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate 2.00 GiB (injected at epoch {epoch}, step {step}, "
                f"trial {self.trial_number})"
            )


class SimulatedGpu:
    """A card of ``capacity_bytes`` for machines without CUDA: over-capacity trials OOM at once."""

    def __init__(self, capacity_bytes: int, estimated_peak_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self.estimated_peak_bytes = estimated_peak_bytes

    @property
    def fits(self) -> bool:
        return self.estimated_peak_bytes <= self.capacity_bytes

    def check(self, epoch: int, step: int) -> None:
        """Raise torch.cuda.OutOfMemoryError at any (hence the first) step when the estimate exceeds it."""
        import torch

        if self.fits:
            return
        raise torch.cuda.OutOfMemoryError(
            f"CUDA out of memory. Tried to allocate "
            f"{(self.estimated_peak_bytes - self.capacity_bytes) / GIB:.2f} GiB. Simulated GPU has a total "
            f"capacity of {self.capacity_bytes / GIB:.2f} GiB; estimated peak "
            f"{self.estimated_peak_bytes / GIB:.2f} GiB (simulated, epoch {epoch}, step {step})"
        )
