"""Elastic admission: lighter but equivalent ways to run a trial that does not fit beside the running ones.

With ``--par``, a trial whose estimated peak does not fit beside the trials already on the card would make
its worker idle until they finish. Instead, after ``elastic_after_s`` of waiting, the worker may run it in a
form that needs less memory and trains the same model:

- gradient checkpointing on: the forward pass is recomputed in the backward pass (dropout masks replayed),
  so the gradients are the same; it costs about a third more compute;
- the micro-batch halved (or quartered) with the gradient accumulation doubled (quadrupled): the same
  effective batch, the same examples per optimizer step, the same number of steps and schedule.

The sampled hyperparameters stay the trial's params in Optuna; the form that ran is recorded on the trial
(``elastic_form``, ``run_config``) and its MLflow run. ``--no-elastic`` turns it off.
"""

from __future__ import annotations

from hpo.config.study import TrialConfig

MAX_HALVINGS = 2  # the micro-batch goes down to a quarter of the sampled one at most


def lighter_forms(cfg: TrialConfig, max_halvings: int = MAX_HALVINGS) -> list[TrialConfig]:
    """Equivalent forms of ``cfg`` that need less memory, in the order a worker prefers them (cheapest in
    compute first): checkpointing, then each smaller micro-batch without and with checkpointing."""
    forms: list[TrialConfig] = []
    if not cfg.grad_checkpointing:
        forms.append(cfg.model_copy(update={"grad_checkpointing": True}))
    batch, accum = cfg.batch_size, cfg.grad_accum
    for _ in range(max_halvings):
        if batch % 2 or batch < 2:
            break
        batch, accum = batch // 2, accum * 2
        smaller = cfg.model_copy(update={"batch_size": batch, "grad_accum": accum})
        forms.append(smaller)
        if not cfg.grad_checkpointing:
            forms.append(smaller.model_copy(update={"grad_checkpointing": True}))
    return forms


def describe(sampled: TrialConfig, ran: TrialConfig) -> str:
    """How ``ran`` differs from ``sampled`` in one phrase ("" when it is the sampled form)."""
    parts = []
    if (ran.batch_size, ran.grad_accum) != (sampled.batch_size, sampled.grad_accum):
        parts.append(f"micro-batch {ran.batch_size}x{ran.grad_accum} accumulation")
    if ran.grad_checkpointing and not sampled.grad_checkpointing:
        parts.append("gradient checkpointing")
    return " + ".join(parts)
