"""The best trial for `hpo best`, with its test-split evaluation when asked for."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from hpo.config.study import StudyConfig
from hpo.errors import StorageError
from hpo.results.report_summary import fmt, used_config
from hpo.results.trials import count_states
from hpo.storage.study import CONFIG_ATTR, load_existing
from hpo.trial import keys as K

TEST_EVALUATION = "test_evaluation"  # study user attr: the last `hpo best --evaluate` result
DIGITS = 4  # significant digits of the floats `hpo best` prints (--json: full precision)


MEMORY_REASONS = (K.REASON_OOM, K.REASON_MEMORY_ESTIMATE, K.REASON_ADMISSION_TIMEOUT, K.REASON_WORKER_DEATHS)


def no_complete_trial(study: str, counts: dict[str, int], target: int | None) -> tuple[str, str]:
    """Why a study has no complete trial and what to do: (what happened, the fix). ``counts`` as
    ``count_states`` gives them, ``target`` the study's --n-trials (None: unknown)."""
    pruned = {k.removeprefix("pruned_"): v for k, v in counts.items() if k.startswith("pruned_") and v}
    finished = counts.get("complete", 0) + sum(pruned.values())
    if not pruned:
        return "no trial finished yet", "run `hpo tune` until at least one trial completes"
    ranked = sorted(pruned.items(), key=lambda kv: -kv[1])
    breakdown = ", ".join(f"{reason} {n}" for reason, n in ranked)
    name, top = shlex.quote(study), ranked[0][0]
    why = f"see why: hpo trials --study {name} --reason {top}"
    if top in MEMORY_REASONS:
        why += " and the GPU memory (a larger --gpu-memory card, smaller models, batch sizes or max_length)"
    elif top == K.REASON_EARLY_STOP:
        why += " (they stopped early: raise --patience or --epochs)"
    if target is not None and finished < target:
        return f"{finished} of {target} trials finished, all pruned ({breakdown})", (
            f"resume it to run the other {target - finished}: hpo tune --study {name} (same --storage); {why}"
        )
    more = f" --n-trials {2 * target}" if target else " --n-trials N"
    return f"all {finished} finished trials were pruned ({breakdown})", (
        f"the target is reached: raise --n-trials to run more (hpo tune --study {name}{more}); {why}"
    )


def best_trial(study: optuna.Study) -> FrozenTrial:
    """The best complete trial, or a StorageError saying there is none yet and what to do."""
    try:
        return study.best_trial
    except ValueError as exc:
        target = (study.user_attrs.get(CONFIG_ATTR) or {}).get("n_trials")
        detail, fix = no_complete_trial(study.study_name, count_states(study), target)
        raise StorageError(f"study '{study.study_name}' has no complete trial yet: {detail}", fix) from exc


def describe_best(study: optuna.Study) -> dict[str, Any]:
    """The best trial as a JSON-able mapping (with its last test-split evaluation, if any)."""
    t = best_trial(study)
    test = study.user_attrs.get(TEST_EVALUATION)
    return {
        "number": t.number,
        "value": t.value,
        "params": dict(t.params),
        "config": t.user_attrs.get(K.FINAL_CONFIG) or t.user_attrs.get(K.TRIAL_CONFIG),
        "best_epoch": t.user_attrs.get(K.BEST_EPOCH),
        "estimated_peak_gb": t.user_attrs.get(K.ESTIMATED_PEAK_GB),
        "mlflow_run_id": t.user_attrs.get(K.MLFLOW_RUN_ID),
        "test": test if test and test.get("trial") == t.number else None,
    }


def show_best(study: str, storage_url: str, evaluate: bool, data_dir: Path | None, as_json: bool) -> str:
    """`hpo best`: the best trial's value and the config fields it uses (floats to DIGITS significant digits;
    ``as_json``: the whole config, full precision), optionally retrained and scored on the test split."""
    s = load_existing(study, storage_url)
    out = describe_best(s)
    if evaluate:
        from hpo.results.evaluate import evaluate_best  # lazy: training imports torch

        stored = dict(s.user_attrs.get(CONFIG_ATTR) or {})
        if data_dir is not None:
            stored["data_dir"] = str(data_dir)
        out["test"] = evaluate_best(StudyConfig.model_validate(stored), s, best_trial(s))
        s.set_user_attr(TEST_EVALUATION, out["test"])  # finished trials are immutable: keep it on the study
    if as_json:
        return json.dumps(out, indent=2, default=str)
    lines = [f"best trial {out['number']}: value {out['value']:.4f} (best epoch {out['best_epoch']})"]
    config = used_config(out["config"] or out["params"])
    lines += [f"  {key:20s} {fmt(value, DIGITS)}" for key, value in config.items()]
    if out["test"]:
        shown = (f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in out["test"].items())
        lines.append("test split: " + ", ".join(shown))
    return "\n".join(lines)
