"""Names of what a trial records: Optuna user attrs, pruned reasons and MLflow fields.

``hpo.trial.outcomes`` is the only writer; readers (``hpo.results``, the launcher) import these names instead
of spelling the strings again.
"""

from __future__ import annotations

# ---- Optuna user attrs ------------------------------------------------------------------------------------
TRIAL_CONFIG = "trial_config"  # the sampled TrialConfig (model_dump)
ESTIMATED_PEAK_GB = "estimated_peak_gb"
ESTIMATE_METHOD = "estimate_method"
ESTIMATED_HOST_GB = "estimated_host_gb"  # host-RAM peak beyond the worker process (hpo.memory.host)
MLFLOW_RUN_ID = "mlflow_run_id"
HOST = "host"  # where the trial's process runs (a start fails RUNNING trials whose process is gone)
PID = "pid"
DEVICE = "device"
GPU_GB = "gpu_gb"  # the card size the trial was sized against (given by --gpu-memory or detected)
HEADROOM_GB = "headroom_gb"  # kept free on that card
PRUNED_REASON = "pruned_reason"
OOM = "oom"  # True when the trial ran out of memory
OOM_CONFIG = "oom_config"  # OomRecord.to_dict() of the last attempt
OOM_ATTEMPTS = "oom_attempts"
MEASURED_PEAK_GB = "measured_peak_gb"  # torch.cuda.max_memory_allocated
MEASURED_RESERVED_GB = "measured_reserved_gb"
MEASURED_DEVICE_GB = "measured_device_gb"  # reserved + context, or NVML when larger
NVML_PROCESS_GB = "nvml_process_gb"
HIGH_MEMORY = "high_memory"
BEST_EPOCH = "best_epoch"
EPOCHS_RUN = "epochs_run"
EPOCHS_SCHEDULED = "epochs_scheduled"  # the LR schedule spans these (hpo best --evaluate replays it)
STOPPED_EARLY = "stopped_early"
FINAL_CONFIG = "final_config"  # after shrink or a cpu fallback
FINAL_DEVICE = "final_device"
ERROR = "error"
FATAL_ERROR = "fatal_error"
ADMISSION_WAIT_S = "admission_wait_s"  # with a memory ledger (--par)
ADMITTED_AT = "admitted_at"
RELEASED_AT = "released_at"
ELASTIC_FORM = "elastic_form"  # a lighter equivalent form ran (hpo.trial.elastic)
RUN_CONFIG = "run_config"
RUN_ESTIMATED_PEAK_GB = "run_estimated_peak_gb"
GPU = "gpu"  # the GPU a --par trial was admitted on: its NVML UUID (or simulated-<bytes>-gpu<i>)
WORKER = "worker"  # the launcher's worker that ran it: slot.generation (hpo.run.protocol.WorkerId)
SAMPLER_SEED = "sampler_seed"  # the seed of the sampler that proposed it (hpo.storage.study.seed_sampler)
WORKER_DEATH = "worker_death"  # how its worker died: exit code / signal, host RAM, phase, likely cause
OBJECTIVE_PREFIX = "objective_"  # --objectives: objective_<name> per objective (also an MLflow metric)


def objective_key(name: str) -> str:
    """The user attr / MLflow metric holding objective ``name`` of a multi-objective study's trial."""
    return OBJECTIVE_PREFIX + name


# ---- values of PRUNED_REASON ------------------------------------------------------------------------------
REASON_MEMORY_ESTIMATE = "memory_estimate"
REASON_EARLY_STOP = "early_stop"
REASON_OOM = "oom"
REASON_ADMISSION_TIMEOUT = "admission_timeout"  # waited --admission-timeout for room in the GPU ledger
REASON_WORKER_DEATHS = "worker_deaths"  # the config killed its worker twice (hpo.trial.deaths)
PRUNED_REASONS: tuple[str, ...] = (
    REASON_OOM,
    REASON_MEMORY_ESTIMATE,
    REASON_EARLY_STOP,
    REASON_ADMISSION_TIMEOUT,
    REASON_WORKER_DEATHS,
)  # every REASON_* above: `hpo trials --reason` (help and check) and count_states read this tuple

# ---- trial states: `hpo trials --state` (Optuna's TrialState names, lower case) ---------------------------
TRIAL_STATES: tuple[str, ...] = ("complete", "pruned", "fail", "running", "waiting")

# ---- MLflow -----------------------------------------------------------------------------------------------
TRIAL_NUMBER_TAG = "trial_number"
STATE_TAG = "state"  # RUNNING, COMPLETE, PRUNED (+ tag pruned_reason) or FAIL: `tags.pruned_reason = 'oom'`
RUN_NAME_TAG = "mlflow.runName"  # setting it renames the run: the list reads "trial 12 · pruned: oom"
OOM_ERROR_PARAM = "oom_error"  # "True" on the run of an OOM trial; params oom_<OomRecord field> beside it
OOM_PARAM_PREFIX = "oom_"
OOM_ARTIFACT = "oom_config.json"


def run_name(number: int, state: str, reason: str | None = None) -> str:
    """A trial's MLflow run name: "trial 12 · running", "trial 12 · pruned: oom", "trial 3 · complete"."""
    label = {"FAIL": "failed"}.get(state, state.lower())
    return f"trial {number} · {label}: {reason}" if reason else f"trial {number} · {label}"
