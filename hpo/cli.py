"""The `hpo` command line. Thin: parse options, load config, call one core function, print.

Errors from the core (hpo.errors.HpoError) become one line on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from hpo.errors import HpoError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Optuna hyperparameter search for transformer classifiers on one GPU, without CUDA OOM.",
)
F = TypeVar("F", bound=Callable[..., Any])

StudyOpt = Annotated[str | None, typer.Option("--study", help="Study name (same name = resume).")]
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage", help="Optuna storage URL (default: OPTUNA_STORAGE, else sqlite under --output-dir)."
    ),
]
OutputOpt = Annotated[
    Path | None,
    typer.Option(
        "--output-dir", help="Where the SQLite storage, MLflow db and calibration live (default: runs)."
    ),
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Study YAML (see configs/studies/).")]


def fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def handles_errors(fn: F) -> F:
    """Turn HpoError into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HpoError as exc:
            raise fail(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def _split(models: str | None) -> list[str] | None:
    return [m.strip() for m in models.split(",") if m.strip()] if models else None


def _study_config(config: Path | None, **overrides: Any) -> Any:
    from hpo.config import load_config

    return load_config(config, overrides)


@app.command()
@handles_errors
def tune(
    agent: Annotated[str | None, typer.Option(help="Task to tune (criteria).")] = None,
    study: StudyOpt = None,
    n_trials: Annotated[
        int | None,
        typer.Option("--n-trials", help="Target number of finished (complete + pruned) trials in the study."),
    ] = None,
    storage: StorageOpt = None,
    config: ConfigOpt = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="ReDSM5-format data (default: the shipped synthetic sample)."),
    ] = None,
    models: Annotated[
        str | None, typer.Option(help="Comma-separated model names/paths to search over.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs per trial.")] = None,
    patience: Annotated[int | None, typer.Option(help="Early-stopping patience (epochs).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for splits, sampler and training.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop starting trials after SEC seconds.")] = None,
    output_dir: OutputOpt = None,
    mlflow_uri: Annotated[
        str | None,
        typer.Option("--mlflow-uri", help="MLflow tracking URI (default: sqlite under --output-dir)."),
    ] = None,
    no_mlflow: Annotated[bool, typer.Option("--no-mlflow", help="Do not log to MLflow.")] = False,
    gpu_memory: Annotated[
        str | None,
        typer.Option(
            "--gpu-memory", help="GPU memory budget, e.g. 24GB (simulated when no CUDA device is present)."
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
) -> None:
    """Create or resume a study and run trials until it has --n-trials finished trials."""
    from hpo.tune import run_tune

    cfg = _study_config(
        config,
        agent=agent,
        study=study,
        n_trials=n_trials,
        storage=storage,
        data_dir=data_dir,
        models=_split(models),
        epochs=epochs,
        patience=patience,
        seed=seed,
        timeout=timeout,
        output_dir=output_dir,
        mlflow_uri=mlflow_uri,
        mlflow=False if no_mlflow else None,
        gpu_memory=gpu_memory,
        on_oom=on_oom,
        device=device,
        par=par,
        recycle_after=recycle_after,
        elastic=elastic,
        elastic_after_s=elastic_after,
    )
    typer.echo(
        f"study {cfg.study} | agent {cfg.agent} | models {','.join(cfg.models)} | target "
        f"{cfg.n_trials} trials x <= {cfg.epochs} epochs | par {cfg.par} | storage {cfg.storage_url}"
    )
    report = run_tune(cfg)
    c = report.counts
    new = sum(v for k, v in c.items() if k.startswith(("complete", "pruned"))) - report.finished_before
    typer.echo(
        f"\nstudy {report.study}: {report.finished_before + new} finished ({new} new) in "
        f"{report.seconds:.0f}s - {report.stopped_reason}"
    )
    typer.echo(
        f"  complete {c.get('complete', 0)}, pruned: early stop {c.get('pruned_early_stop', 0)}, "
        f"memory estimate {c.get('pruned_memory_estimate', 0)}, OOM {c.get('pruned_oom', 0)}; "
        f"failed {c.get('fail', 0)}"
    )
    if report.best_value is not None:
        typer.echo(
            f"best trial {report.best_trial}: val {report.metric} = {report.best_value:.4f} "
            f"(majority-class baseline {report.baseline:.4f})"
        )
        typer.echo(
            "  "
            + ", ".join(
                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in report.best_params.items()
            )
        )
    if report.mlflow_uri:
        typer.echo(f"MLflow: mlflow ui --backend-store-uri {report.mlflow_uri}")
    typer.echo(f"trials: hpo trials --study {report.study} --storage {report.storage}")
    if report.poisoned:
        raise typer.Exit(code=3)
    if report.interrupted:
        raise typer.Exit(code=130)


@app.command()
@handles_errors
def worker(
    study: Annotated[str, typer.Option("--study", help="Study to join (created by `hpo tune`).")],
    storage: StorageOpt = None,
    output_dir: OutputOpt = None,
    config: ConfigOpt = None,
    config_json: Annotated[Path | None, typer.Option("--config-json", hidden=True)] = None,
    recycle_after: Annotated[int, typer.Option("--recycle-after", help="Exit after K trials.")] = 1_000_000,
    worker_id: Annotated[str, typer.Option("--worker-id", hidden=True)] = "",
) -> None:
    """Join an existing study from another shell or machine and run its trials."""
    from hpo.config import StudyConfig
    from hpo.launcher import run_worker
    from hpo.study import load_existing

    url = _storage_url(storage, output_dir)
    if config_json is not None:
        cfg = StudyConfig.model_validate_json(config_json.read_text())
    elif config is not None:
        cfg = _study_config(config, study=study, storage=url, output_dir=output_dir)
    else:
        stored = dict(load_existing(study, url).user_attrs.get("config") or {})
        stored.update({"study": study, "storage": url})
        if output_dir is not None:
            stored["output_dir"] = str(output_dir)
        cfg = StudyConfig.model_validate(stored)
    raise typer.Exit(code=run_worker(cfg, recycle_after=recycle_after, worker_id=worker_id))


def _storage_url(storage: str | None, output_dir: Path | None) -> str:
    if storage:
        return storage
    if os.environ.get("OPTUNA_STORAGE"):
        return os.environ["OPTUNA_STORAGE"]
    return f"sqlite:///{((output_dir or Path('runs')) / 'hpo.db').resolve()}"


@app.command()
@handles_errors
def trials(
    study: Annotated[str, typer.Option("--study", help="Study name.")],
    storage: StorageOpt = None,
    output_dir: OutputOpt = None,
    state: Annotated[str | None, typer.Option(help="complete | pruned | fail | running | all")] = None,
    reason: Annotated[
        str | None, typer.Option(help="For pruned trials: oom | memory_estimate | early_stop")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON rows.")] = False,
) -> None:
    """List a study's trials: number, state, value, pruning reason, duration, key params."""
    from hpo.oom_report import filter_trials
    from hpo.results import render_trials, trial_row
    from hpo.study import load_existing

    s = load_existing(study, _storage_url(storage, output_dir))
    rows = [trial_row(t) for t in filter_trials(s.get_trials(deepcopy=False), state, reason)]
    typer.echo(json.dumps(rows, indent=2, default=str) if as_json else render_trials(rows))


@app.command()
@handles_errors
def best(
    study: Annotated[str, typer.Option("--study", help="Study name.")],
    storage: StorageOpt = None,
    output_dir: OutputOpt = None,
    evaluate: Annotated[
        bool,
        typer.Option("--evaluate", help="Retrain the best config and score it on the held-out test split."),
    ] = False,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Data for --evaluate (default: the study's).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the best trial (and optionally its test-split evaluation)."""
    from hpo.config import StudyConfig
    from hpo.results import describe_best
    from hpo.study import load_existing

    s = load_existing(study, _storage_url(storage, output_dir))
    out = describe_best(s)
    if evaluate:
        from hpo.evaluate import evaluate_best

        stored = dict(s.user_attrs.get("config") or {})
        if data_dir is not None:
            stored["data_dir"] = str(data_dir)
        out["test"] = evaluate_best(StudyConfig.model_validate(stored), s)
    if as_json:
        typer.echo(json.dumps(out, indent=2, default=str))
        return
    typer.echo(f"best trial {out['number']}: value {out['value']:.4f} (best epoch {out['best_epoch']})")
    for key, value in (out["config"] or out["params"]).items():
        typer.echo(f"  {key:20s} {value}")
    if out["test"]:
        typer.echo(
            "test split: "
            + ", ".join(
                f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in out["test"].items()
            )
        )


@app.command()
@handles_errors
def oom(
    study: Annotated[str, typer.Option("--study", help="Study name.")],
    storage: StorageOpt = None,
    output_dir: OutputOpt = None,
    source: Annotated[
        str, typer.Option(help="optuna (trial user attrs) | mlflow (runs with oom_error=True)")
    ] = "optuna",
    mlflow_uri: Annotated[
        str | None,
        typer.Option(
            "--mlflow-uri",
            help="MLflow tracking URI for --source mlflow (default: sqlite under --output-dir).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """OOM trials: config, where it failed, estimated vs measured peak, and a summary line."""
    from hpo.errors import ConfigError
    from hpo.oom_report import oom_rows_from_mlflow, oom_rows_from_optuna, render_oom_table, summarize

    if source == "optuna":
        from hpo.study import load_existing

        rows = oom_rows_from_optuna(load_existing(study, _storage_url(storage, output_dir)))
    elif source == "mlflow":
        uri = mlflow_uri or f"sqlite:///{((output_dir or Path('runs')) / 'mlflow.db').resolve()}"
        rows = oom_rows_from_mlflow(uri, study)
    else:
        raise ConfigError(f"unknown --source '{source}'", "use optuna or mlflow")
    summary = summarize(rows)
    if as_json:
        typer.echo(json.dumps({"rows": rows, "summary": summary}, indent=2, default=str))
    else:
        typer.echo(render_oom_table(rows, summary))


@app.command()
@handles_errors
def estimate(
    model: Annotated[str, typer.Option(help="Catalog name, local path or cached hub id.")],
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Micro-batch size.")] = 16,
    max_length: Annotated[int, typer.Option("--max-length", min=1, help="Sequence length (padded).")] = 512,
    precision: Annotated[str, typer.Option(help="fp32 | fp16 | bf16 | bf16_pure")] = "fp32",
    optimizer: Annotated[str, typer.Option(help="adamw | adafactor | sgd | adamw_8bit")] = "adamw",
    grad_checkpointing: Annotated[
        bool, typer.Option("--grad-checkpointing", help="Activation checkpointing.")
    ] = False,
    lora_r: Annotated[int, typer.Option("--lora-r", min=0, help="LoRA rank (0 = full fine-tune).")] = 0,
    quant: Annotated[str | None, typer.Option(help="4bit | 8bit base weights")] = None,
    mode: Annotated[str, typer.Option(help="train | inference")] = "train",
    frozen_layers: Annotated[int, typer.Option("--frozen-layers", min=0, help="Frozen encoder layers.")] = 0,
    attn_impl: Annotated[str, typer.Option("--attn-impl", help="sdpa | eager | flash")] = "sdpa",
    lora_targets: Annotated[
        str, typer.Option("--lora-targets", help="Comma-separated module names LoRA adapts.")
    ] = "query,value",
    gpu_memory: Annotated[
        str | None,
        typer.Option("--gpu-memory", help="Card size, e.g. 24GB (default: the detected GPU, else 24GB)."),
    ] = None,
    headroom_gb: Annotated[
        float | None, typer.Option("--headroom-gb", help="Memory kept free (default: the GPU profile's).")
    ] = None,
    method: Annotated[str, typer.Option(help="analytic | trace (meta-device run of 2 steps)")] = "analytic",
    max_batch: Annotated[
        bool, typer.Option("--max-batch", help="Print the largest batch size that fits.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Predict the peak GPU memory of one training step before loading anything."""
    from hpo.memory.estimate import MemoryRequest
    from hpo.memory.report import run_estimate

    req = MemoryRequest(
        batch_size=batch_size,
        max_length=max_length,
        precision=precision,
        optimizer=optimizer,
        grad_checkpointing=grad_checkpointing,
        lora_r=lora_r,
        quant=quant,
        mode=mode,
        frozen_layers=frozen_layers,
        attn_impl=attn_impl,
        lora_targets=tuple(t.strip() for t in lora_targets.split(",") if t.strip()),
    )  # validates itself (ConfigError)
    typer.echo(
        run_estimate(
            model,
            req,
            gpu_memory=gpu_memory,
            method=method,
            as_json=as_json,
            max_batch=max_batch,
            headroom_gb=headroom_gb,
        )
    )


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except HpoError as exc:  # pragma: no cover - commands already handle it
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
