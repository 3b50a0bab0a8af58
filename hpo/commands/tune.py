"""`hpo tune` and `hpo worker`: run a study here, or join one from another shell or host."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hpo.commands.common import (
    ConfigOpt,
    DataDirOpt,
    GpuMemoryOpt,
    MlflowUriOpt,
    OutputOpt,
    StorageOpt,
    StudyOpt,
    handles_errors,
    split_list,
)
from hpo.commands.exit_codes import CRASH_LOOP, PENDING_LEFT, POISONED, for_signal
from hpo.commands.tune_options import (
    FLAG_NAMES,
    GroupColOpt,
    LabelColOpt,
    ObjectivesOpt,
    SplitColOpt,
    TextColOpt,
    TextPairColOpt,
    TuneOptions,
    VerboseOpt,
    columns_override,
)
from hpo.config.study import storage_url
from hpo.redact import redact
from hpo.tracking.quiet import quiet_logging


@handles_errors
def tune(
    agent: Annotated[str | None, typer.Option(help="Task to tune (criteria, evidence, classify).")] = None,
    study: StudyOpt = None,
    n_trials: Annotated[
        int | None,
        typer.Option("--n-trials", help="Target number of finished (complete + pruned) trials in the study."),
    ] = None,
    storage: StorageOpt = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    text_col: TextColOpt = None,
    text_pair_col: TextPairColOpt = None,
    label_col: LabelColOpt = None,
    group_col: GroupColOpt = None,
    split_col: SplitColOpt = None,
    objectives: ObjectivesOpt = None,
    models: Annotated[
        str | None, typer.Option(help="Comma-separated model names/paths to search over.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs per trial.")] = None,
    patience: Annotated[int | None, typer.Option(help="Early-stopping patience (epochs).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for splits, sampler and training.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop starting trials after SEC seconds.")] = None,
    output_dir: OutputOpt = None,
    mlflow_uri: MlflowUriOpt = None,
    no_mlflow: Annotated[bool, typer.Option("--no-mlflow", help="Do not log to MLflow.")] = False,
    no_report: Annotated[
        bool,
        typer.Option(
            "--no-report", help="Skip the HTML report (hpo report) written and logged to MLflow at the end."
        ),
    ] = False,
    gpu_memory: GpuMemoryOpt = None,
    gpus: Annotated[
        str | None,
        typer.Option(
            "--gpus",
            help="GPU indices to use, e.g. 0,1 (default: every visible GPU): --par workers per GPU, one "
            "memory ledger per GPU, a trial runs on the first GPU with room. Without CUDA, with "
            "--gpu-memory, each index is a simulated card of that size.",
        ),
    ] = None,
    host_memory: Annotated[
        str | None,
        typer.Option(
            "--host-memory",
            help="With --par: host RAM the trials may use, e.g. 8GB (default: what is available at start); "
            "trials wait for room so their estimated RAM peaks fit.",
        ),
    ] = None,
    on_oom: Annotated[str | None, typer.Option("--on-oom", help="prune | shrink | cpu")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda")] = None,
    par: Annotated[
        int | None,
        typer.Option(
            help="Worker processes sharing the GPU: an upper bound, trials are admitted by estimated memory."
        ),
    ] = None,
    recycle_after: Annotated[
        int | None,
        typer.Option(
            "--recycle-after",
            help="Restart a worker after K trials (returns fragmented memory to the driver).",
        ),
    ] = None,
    elastic: Annotated[
        bool | None,
        typer.Option(
            "--elastic/--no-elastic",
            help="With --par: a trial that waited --elastic-after seconds for room runs in a lighter "
            "equivalent form (gradient checkpointing, smaller micro-batch x more accumulation). Default: on.",
        ),
    ] = None,
    elastic_after: Annotated[
        float | None,
        typer.Option("--elastic-after", help="Seconds a trial waits for room as sampled (default 60)."),
    ] = None,
    allow_changes: Annotated[
        bool,
        typer.Option(
            "--allow-changes",
            help="Resume a study with compatible changes (epochs, patience, wider float ranges); they are "
            "recorded on the study. Other changes need a new --study name.",
        ),
    ] = False,
    allow_dirty_data: Annotated[
        bool,
        typer.Option(
            "--allow-dirty-data",
            help="Drop rows with empty text and contradictory duplicates with a warning instead of an error.",
        ),
    ] = False,
    admission_timeout: Annotated[
        float | None,
        typer.Option(
            "--admission-timeout",
            min=0.001,
            help="With --par: seconds a trial may wait for GPU room before it is pruned (default: no limit).",
        ),
    ] = None,
    admission: Annotated[
        str | None,
        typer.Option(
            "--admission",
            help="ledger (default): a trial starts only when its estimated peak fits beside the running "
            "ones. none: a BASELINE FOR BENCHMARKS, as fixed-PAR tools run: no memory ledger (GPU or host "
            "RAM), no allocator cap, no pruning by estimate; every config runs and may run out of memory.",
        ),
    ] = None,
    storage_retry: Annotated[
        str | None,
        typer.Option(
            "--storage-retry",
            help="How long storage calls wait out a database outage (restart, failover), retrying with "
            "backoff, e.g. 30s, 10m, 1h (default 10m); then the run stops with exit code 75 (finished trials "
            "are kept: rerun to resume).",
        ),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Create or resume a study and run trials until it has --n-trials finished trials."""
    quiet_logging(verbose)  # third-party INFO lines: only with --verbose (hpo.tracking.quiet)
    from hpo.config.study import load_config

    opts = TuneOptions(
        agent=agent,
        study=study,
        n_trials=n_trials,
        storage=storage,
        data_dir=data_dir,
        models=split_list(models),
        epochs=epochs,
        patience=patience,
        seed=seed,
        timeout=timeout,
        output_dir=output_dir,
        mlflow_uri=mlflow_uri,
        mlflow=False if no_mlflow else None,
        report=False if no_report else None,
        gpu_memory=gpu_memory,
        gpus=split_list(gpus),
        host_memory=host_memory,
        on_oom=on_oom,
        device=device,
        par=par,
        recycle_after=recycle_after,
        elastic=elastic,
        elastic_after_s=elastic_after,
        allow_changes=allow_changes or None,
        allow_dirty_data=allow_dirty_data or None,
        admission_timeout_s=admission_timeout,
        admission=admission,
        storage_retry=storage_retry,
        columns=columns_override(text_col, text_pair_col, label_col, group_col, split_col),
        objectives=split_list(objectives),
    )
    cfg = load_config(config, opts.overrides(), flags=FLAG_NAMES)
    gpu_note = f" per GPU x GPUs {','.join(map(str, cfg.gpus))}" if cfg.gpus else ""
    typer.echo(
        f"study {cfg.study} | agent {cfg.agent} | models {','.join(cfg.models)} | target "
        f"{cfg.n_trials} trials x <= {cfg.epochs} epochs | par {cfg.par}{gpu_note} | "
        f"storage {redact(cfg.storage_url)}"
    )  # at once: the setup below (torch, data, storage) takes seconds
    from hpo.run.tune import run_tune  # lazy: imports torch

    report = run_tune(cfg)
    typer.echo("\n".join(report.lines()))
    if report.poisoned:
        raise typer.Exit(code=POISONED)
    if report.crash_loop:
        raise typer.Exit(code=CRASH_LOOP)
    if report.interrupted:
        raise typer.Exit(code=for_signal(report.signum))


@handles_errors
def worker(
    study: Annotated[str, typer.Option("--study", help="Study to join (created by `hpo tune`).")],
    storage: StorageOpt = None,
    output_dir: OutputOpt = None,
    config: ConfigOpt = None,
    config_json: Annotated[Path | None, typer.Option("--config-json", hidden=True)] = None,
    mlflow_uri: MlflowUriOpt = None,
    recycle_after: Annotated[int, typer.Option("--recycle-after", help="Exit after K trials.")] = 1_000_000,
    slot: Annotated[int | None, typer.Option("--slot", hidden=True, min=0)] = None,
    generation: Annotated[int, typer.Option("--generation", hidden=True, min=0)] = 0,
    launcher_pid: Annotated[int | None, typer.Option("--launcher-pid", hidden=True)] = None,
) -> None:
    """Join an existing study from another shell or machine and run its trials.

    Pass a password-bearing storage URL by environment (OPTUNA_STORAGE), not --storage: command lines are
    visible to every user of the host.
    """
    from hpo.run.protocol import WorkerExit, WorkerId
    from hpo.run.worker import run_worker, worker_config  # lazy: imports torch

    cfg = worker_config(study, storage_url(storage, output_dir), output_dir, config, config_json, mlflow_uri)
    wid = WorkerId(slot, generation) if slot is not None else None
    code = run_worker(cfg, recycle_after=recycle_after, worker=wid, launcher_pid=launcher_pid)
    if code == WorkerExit.DISK_FULL and launcher_pid is None:  # a launcher says it once, for all workers
        typer.echo(
            f"error: disk full while running study '{cfg.study}'; finished trials are kept (free space on "
            f"the disk of {cfg.output_dir} / the storage and rerun to resume)",
            err=True,
        )
    raise typer.Exit(code=int(code))


@handles_errors
def sync_mlflow(
    study: Annotated[str, typer.Option("--study", help="Study whose buffered MLflow writes to replay.")],
    output_dir: OutputOpt = None,
    mlflow_uri: MlflowUriOpt = None,
) -> None:
    """Replay MLflow writes buffered while MLflow was unavailable (also done at every `hpo tune` start)."""
    from hpo.run.bootstrap import sync_mlflow as replay  # lazy: imports MLflow

    replayed, left = replay(study, output_dir, mlflow_uri)
    typer.echo(f"replayed {replayed} MLflow write(s); {left} still pending")
    if left:
        raise typer.Exit(code=PENDING_LEFT)
