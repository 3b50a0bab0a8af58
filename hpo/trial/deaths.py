"""Configs that killed their worker: how often a config (or a near-identical one) already died.

A worker that dies (the kernel's OOM killer, a segfault) fails its trial with the evidence recorded by
``hpo.trial.outcomes.worker_died``. Optuna's samplers ignore FAIL trials, so TPE may propose the same config
again; the objective asks :func:`deaths_of` before it runs one and prunes a config that already killed its
worker :data:`MAX_DEATHS` times (a died trial is retried once: it never runs a third time).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import TrialState

from hpo.config.study import TrialConfig
from hpo.trial import keys as K

MAX_DEATHS = 2
_SIGNIFICANT = 2  # floats compare on 2 significant digits: lr 3.1e-5 and 3.14e-5 are the same config


def near_key(config: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """What makes two configs near-identical: every field equal, floats to 2 significant digits."""
    out = []
    for name, value in sorted(config.items()):
        if isinstance(value, float):
            value = float(f"{value:.{_SIGNIFICANT - 1}e}")
        out.append((name, value))
    return tuple(out)


def deaths_of(study: optuna.Study, config: TrialConfig) -> int:
    """Trials of ``study`` whose worker died running ``config`` or a near-identical one."""
    key = near_key(config.model_dump())
    return sum(
        1
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        if K.WORKER_DEATH in t.user_attrs
        and isinstance(t.user_attrs.get(K.TRIAL_CONFIG), dict)
        and near_key(t.user_attrs[K.TRIAL_CONFIG]) == key
    )
