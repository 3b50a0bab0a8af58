"""Holding a trial's memory admission (``--par``): the form that got room, how long it waited, when it held.

The admission itself (a ledger reservation) is the worker's (``hpo.run.worker.LedgerAdmission``); here the
trial offers it its forms (as sampled first, then the lighter equivalent ones of ``hpo.trial.elastic``) and
runs in the one that was admitted.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence

from hpo.errors import HpoError
from hpo.tracking.tracker import Tracker
from hpo.trial import outcomes
from hpo.trial.context import TrialContext
from hpo.trial.elastic import lighter_forms
from hpo.trial.sizing import Sizer


class NoRoom(HpoError):
    """Raised by an admission when no form of the trial can ever fit (the trial is pruned by estimate)."""


class AdmissionTimeout(HpoError):
    """Raised by an admission that waited ``--admission-timeout`` for room (the trial is pruned)."""


# (device totals of the trial's forms, sampled first; trial number) -> holds room, yields the form's index
Admission = Callable[[Sequence[int], int], contextlib.AbstractContextManager[int]]
# (host-RAM bytes of the trial, trial number) -> holds room in the host's RAM while the block runs
HostAdmission = Callable[[int, int], contextlib.AbstractContextManager[object]]


def no_admission(sizes: Sequence[int], trial: int) -> contextlib.AbstractContextManager[int]:
    """Admit at once, as sampled (one process, or no GPU budget)."""
    return contextlib.nullcontext(0)


def no_host_admission(nbytes: int, trial: int) -> contextlib.AbstractContextManager[object]:
    """Admit at once (one process: one trial at a time)."""
    return contextlib.nullcontext()


@contextlib.contextmanager
def admitted(
    ctx: TrialContext,
    admission: Admission,
    sizer: Sizer,
    tracker: Tracker,
    *,
    elastic: bool,
    host: HostAdmission = no_host_admission,
) -> Iterator[None]:
    """Hold room for the trial while the block runs, in the host's RAM first (``host``), then on the GPU
    (``admission``); ``ctx.tcfg``/``ctx.budget`` become the admitted form."""
    if admission is no_admission and host is no_host_admission:
        yield
        return
    before = ctx.tcfg
    forms = [(ctx.tcfg, ctx.budget)]
    if elastic and ctx.on_gpu:
        lighter = [(f, sizer.estimate(ctx.spec, f)) for f in lighter_forms(ctx.tcfg)]
        forms += [(f, b) for f, b in lighter if b.device_total_bytes < ctx.budget.device_total_bytes]
    sizes = [b.device_total_bytes if ctx.on_gpu else 0 for _, b in forms]
    asked, holding = time.time(), False
    try:
        host_bytes = sizer.host_bytes(ctx.spec, ctx.tcfg, ctx.device.type == "cuda")
        with host(host_bytes, ctx.number), admission(sizes, ctx.number) as k:
            holding = True
            ctx.tcfg, ctx.budget = forms[k]
            outcomes.admitted(ctx, tracker, asked, before, k, getattr(admission, "placed_gpu", None))
            yield
    finally:
        if holding:
            outcomes.released(ctx)
