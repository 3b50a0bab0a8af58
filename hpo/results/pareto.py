"""The Pareto front of a multi-objective study (``hpo tune --objectives``): the trials no other trial beats.

A pure function of values and directions, so that it can be tested on known values (ties, mixed directions)
and checked against Optuna's ``study.best_trials``; ``front_trials`` applies it to a study's complete trials.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hpo.config.study import SECONDARY_OBJECTIVES
from hpo.storage.study import CONFIG_ATTR


def dominates(a: Sequence[float], b: Sequence[float], maximize: Sequence[bool]) -> bool:
    """``a`` is at least as good as ``b`` in every objective and strictly better in one."""
    better = False
    for x, y, up in zip(a, b, maximize, strict=True):
        if (x < y) if up else (x > y):
            return False
        better = better or x != y
    return better


def front(values: Sequence[Sequence[float]], maximize: Sequence[bool]) -> list[int]:
    """Indices of the non-dominated rows of ``values`` (in order). Rows with equal values are all kept (none
    dominates another); a row with a NaN is never on the front."""
    ok = [i for i, row in enumerate(values) if not any(math.isnan(v) for v in row)]
    return [i for i in ok if not any(dominates(values[j], values[i], maximize) for j in ok if j != i)]


def maximizing(study: optuna.Study) -> list[bool]:
    return [d == StudyDirection.MAXIMIZE for d in study.directions]


def front_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's complete trials on the Pareto front, by trial number."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
    done.sort(key=lambda t: t.number)
    return [done[i] for i in front([t.values for t in done], maximizing(study))]


def objective_names(study: optuna.Study) -> list[str]:
    """The study's objectives as ``--objectives`` named them (stored config), else obj0, obj1..."""
    names = (study.user_attrs.get(CONFIG_ATTR) or {}).get("objectives") or []
    if len(names) == len(study.directions):
        return list(names)
    return [f"objective{i}" for i in range(len(study.directions))]


def unit(name: str) -> str:
    """The unit of an objective ("" for the agent's metric)."""
    return SECONDARY_OBJECTIVES.get(name, "")
