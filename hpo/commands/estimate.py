"""`hpo estimate`: the peak GPU memory of one configuration, before anything is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hpo.commands.common import GpuMemoryOpt, JsonOpt, handles_errors, split_list
from hpo.commands.exit_codes import DOES_NOT_FIT
from hpo.memory.budget import AttnImpl, Head, Method, Mode, Optimizer, Precision, Quant


@handles_errors
def estimate(
    model: Annotated[str, typer.Option(help="Catalog name, local path or cached hub id.")],
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Micro-batch size.")] = 16,
    max_length: Annotated[int, typer.Option("--max-length", min=1, help="Sequence length (padded).")] = 512,
    precision: Annotated[
        Precision, typer.Option(help="Autocast fp16/bf16 keeps fp32 master weights; bf16_pure does not.")
    ] = "fp32",
    optimizer: Annotated[
        Optimizer, typer.Option(help="The optimizer (its state is most of the memory).")
    ] = "adamw",
    grad_checkpointing: Annotated[
        bool, typer.Option("--grad-checkpointing", help="Activation checkpointing.")
    ] = False,
    lora_r: Annotated[int, typer.Option("--lora-r", min=0, help="LoRA rank (0 = full fine-tune).")] = 0,
    quant: Annotated[Quant | None, typer.Option(help="Quantized base weights (needs --lora-r).")] = None,
    mode: Annotated[Mode, typer.Option(help="A training step, or inference only.")] = "train",
    frozen_layers: Annotated[int, typer.Option("--frozen-layers", min=0, help="Frozen encoder layers.")] = 0,
    attn_impl: Annotated[AttnImpl, typer.Option("--attn-impl", help="Attention kernel.")] = "sdpa",
    lora_targets: Annotated[
        str,
        typer.Option(
            "--lora-targets",
            help="A set (q_v | qkvo | all_linear) or comma-separated module names LoRA adapts.",
        ),
    ] = "q_v",
    lora_dropout: Annotated[
        float, typer.Option("--lora-dropout", help="peft's dropout on the adapters' input (0: none).")
    ] = 0.0,
    head: Annotated[
        Head,
        typer.Option(help="classifier (what hpo trains) or causal_lm (vocab logits + LM loss, decoders)."),
    ] = "classifier",
    bnb_saves_inputs: Annotated[
        bool,
        typer.Option("--bnb-saves-inputs", help="bitsandbytes < 0.43.2: each 4-bit linear keeps its input."),
    ] = False,
    gpu_memory: GpuMemoryOpt = None,
    headroom_gb: Annotated[
        float | None, typer.Option("--headroom-gb", help="Memory kept free (default: the GPU profile's).")
    ] = None,
    method: Annotated[
        Method, typer.Option(help="analytic (arithmetic) or trace (a meta-device run of 2 steps).")
    ] = "analytic",
    max_batch: Annotated[
        bool, typer.Option("--max-batch", help="Print the largest batch size that fits.")
    ] = False,
    eval_batch_size: Annotated[
        int,
        typer.Option(
            "--eval-batch-size",
            min=0,
            help="Study's evaluation batch (0: no evaluation phase); capped to fit.",
        ),
    ] = 64,
    calibration: Annotated[
        Path | None,
        typer.Option("--calibration", help="calibration.json of a study: apply what real runs measured."),
    ] = None,
    card: Annotated[
        str | None, typer.Option("--card", help="Card name for --calibration (default: the detected GPU's).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Predict the peak GPU memory of a trial (training step, optimizer step, evaluation) before loading
    anything. Exit code 0 when the configuration fits, 1 when it does not (for scripts), 2 for bad input."""
    from hpo.config.catalog import LORA_TARGET_SETS
    from hpo.device.gpu import detect
    from hpo.memory.budget import MemoryRequest
    from hpo.memory.calibrate import read_calibration
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
        lora_targets=LORA_TARGET_SETS.get(lora_targets) or tuple(split_list(lora_targets) or ()),
        lora_dropout=lora_dropout,
        head=head,
        bnb_saves_inputs=bnb_saves_inputs,
    )  # validates itself (ConfigError)
    text, fits = run_estimate(
        model,
        req,
        gpu_memory=gpu_memory,
        method=method,
        as_json=as_json,
        max_batch=max_batch,
        headroom_gb=headroom_gb,
        eval_batch_size=eval_batch_size if mode == "train" else 0,
        calibration=read_calibration(calibration) if calibration is not None else None,
        card=card if card is not None else (detect().name if calibration is not None else ""),
    )
    typer.echo(text)
    if not fits:
        raise typer.Exit(code=DOES_NOT_FIT)
