"""Which StudyConfig settings define a study: every field decided here, once (hpo.run.fingerprint reads it).

A setting is *fingerprinted* when changing it changes what a trial computes, so trials run before and after
the change would not be comparable: resuming a study with another value is refused (``--allow-changes``
lets the compatible ones through, see hpo.run.fingerprint). Every other setting says why it is not: where or
how fast the trials run (scheduling), where things are written (paths), what is logged, how many trials the
run aims at. tests/unit/test_fingerprint_fields.py fails for a field of StudyConfig that is not listed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["defines trials", "identity", "target", "scheduling", "paths", "logging", "resume", "testing"]


@dataclass(frozen=True)
class Role:
    """What a setting is to the study: ``kind`` ("defines trials": fingerprinted) and why."""

    kind: Kind
    why: str

    @property
    def fingerprinted(self) -> bool:
        return self.kind == "defines trials"


def _defines(why: str) -> Role:
    return Role("defines trials", why)


SETTINGS: dict[str, Role] = {
    # fingerprinted: changing one changes what a trial computes
    "agent": _defines("the task, its data pipeline, head and metric"),
    "models": _defines("the models sampled from"),
    "seed": _defines("data splits, initialisation and shuffling"),
    "epochs": _defines("how long each trial trains (compatible change)"),
    "patience": _defines("when a trial stops early (compatible change)"),
    "data_dir": _defines("the data, by content (SHA-256 of each file, examples read), not by path"),
    "columns": _defines("which columns are the text, label, groups and splits (classify agent)"),
    "max_train_examples": _defines("the training rows a trial sees (the data rows count before truncation)"),
    "padding": _defines("the sequence lengths the model sees (dynamic or max_length padding)"),
    "group_by_length": _defines("the order and makeup of the training batches"),
    "eval_batch_size": _defines("the evaluation batches, hence the validation metric's numerics"),
    "space": _defines("the search space every trial is sampled from"),
    "objectives": _defines("what a trial returns and the study's directions (--objectives)"),
    # not fingerprinted
    "study": Role("identity", "the study's name: the key it is stored under"),
    "n_trials": Role("target", "this run's target, not a property of the trials"),
    "timeout": Role("target", "how long this run goes on"),
    "output_dir": Role("paths", "where reports and the default storage go"),
    "storage": Role("paths", "where the study is stored"),
    "mlflow_uri": Role("logging", "where MLflow runs are logged"),
    "mlflow": Role("logging", "whether MLflow runs are logged"),
    "report": Role("logging", "whether `hpo report` is written at the end"),
    "gpu_memory": Role("scheduling", "the GPU budget trials are admitted or pruned against, per machine"),
    "gpus": Role("scheduling", "which GPUs run the trials"),
    "host_memory": Role("scheduling", "the host RAM budget for admission"),
    "headroom_gb": Role("scheduling", "memory kept free on the card"),
    "high_memory_fraction": Role("logging", "tags trials above it high_memory"),
    "on_oom": Role("scheduling", "what to do when a config does not fit; each trial records its form"),
    "prune_by_estimate": Role("scheduling", "whether a config that cannot fit runs, not what it computes"),
    "device": Role("scheduling", "where trials run (the same computation on another machine)"),
    "num_threads": Role("scheduling", "CPU threads per process"),
    "faults": Role("testing", "fault injection for tests"),
    "par": Role("scheduling", "worker processes per GPU"),
    "allow_changes": Role("resume", "whether compatible changes are accepted on this resume"),
    "allow_dirty_data": Role("resume", "accepts dirty rows; the rows dropped show in the data fingerprint"),
    "elastic": Role("scheduling", "lighter equivalent forms of a waiting trial, recorded per trial"),
    "elastic_after_s": Role("scheduling", "when a waiting trial may run in a lighter form"),
    "admission_timeout_s": Role("scheduling", "how long a trial waits for memory"),
    "admission": Role("scheduling", "ledger admission or the fixed-PAR benchmark baseline"),
    "recycle_after": Role("scheduling", "trials per worker process before it is replaced"),
    "max_worker_deaths": Role("scheduling", "when the launcher gives up on dying workers"),
    "storage_retry": Role("scheduling", "how long a run waits out a storage outage"),
    "sampler": Role("scheduling", "how configs are proposed, not what a proposed config computes"),
    "pruner": Role("scheduling", "when a trial is stopped early, not what its epochs compute"),
}

HOW_TO_DECIDE = (
    "add each to SETTINGS in hpo/config/fingerprint.py: _defines(why) if changing it changes what a trial "
    "computes (a study resumed with another value is refused), else Role(kind, why) with the reason it does "
    "not (scheduling, paths, logging, ...)"
)


def fingerprinted() -> tuple[str, ...]:
    """The fingerprinted settings, in SETTINGS order."""
    return tuple(name for name, role in SETTINGS.items() if role.fingerprinted)
