"""Memory terms of LoRA layers, 4-bit bases and a causal-LM head: the parts of the analytic estimate that
depend on what peft, bitsandbytes and the loss create (each checked against the meta trace where the trace
runs it: tests/unit/test_lora_fields.py, tests/unit/test_published_lora_peaks.py)."""

from __future__ import annotations

from hpo.config.catalog import LORA_TARGET_ALIASES, ModelSpec
from hpo.memory.budget import MemoryRequest

_CANONICAL = {alias: name for name, aliases in LORA_TARGET_ALIASES.items() for alias in aliases}


def target_dims(spec: ModelSpec, targets: tuple[str, ...]) -> list[tuple[int, int]]:
    """(in, out) features of each LoRA-wrapped linear in one layer."""
    h, i = spec.hidden_size, spec.intermediate_size
    kvd = spec.kv_heads * (h // spec.num_heads)
    known = {"key": (h, kvd), "value": (h, kvd), "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
    return [known.get(_CANONICAL.get(t, t), (h, h)) for t in targets]


def dropout_saved(spec: ModelSpec, req: MemoryRequest) -> int:
    """Bytes per token one layer saves beyond dropout 0 for peft's ``nn.Dropout`` on each adapter's input.

    Each wrapped linear keeps a bool mask of its input. In fp32 its adapter also keeps its own dropped copy
    instead of the input the adapters of q/k/v (and of gate/up, of down) shared; with autocast (or bf16
    weights and fp32 adapters) the adapter already kept a cast copy per module, which the dropped one
    replaces."""
    if not req.lora_r or req.lora_dropout <= 0:
        return 0
    ins = [a for a, _ in target_dims(spec, req.lora_targets)]
    saved = sum(ins)
    if req.precision == "fp32":
        saved += 4 * sum(ins) - 4 * shared_inputs(spec, req.lora_targets)
    return saved


def shared_inputs(spec: ModelSpec, targets: tuple[str, ...]) -> int:
    """Elements per token of the distinct inputs fp32 adapters keep (without dropout): one for q/k/v, one for
    gate/up, one for down (o_proj's input, the attention output, is kept by attention anyway)."""
    names = {_CANONICAL.get(t, t) for t in targets}
    groups = {"query", "key", "value"} & names, {"gate_proj", "up_proj"} & names, {"down_proj"} & names
    widths = [spec.hidden_size, spec.hidden_size, spec.intermediate_size]
    return sum(w for group, w in zip(groups, widths, strict=True) if group)


def bnb_inputs_saved(spec: ModelSpec, req: MemoryRequest, width: int) -> int:
    """Bytes per token one decoder layer saves when bitsandbytes keeps each 4-bit linear's input for backward:
    releases before 0.43.2 did (``ctx.tensors = (A, B)``; fixed by bitsandbytes#1270, commit 9e75374). The
    inputs of q/k/v (shared), o, gate/up (shared) and down, at the compute width. hpo needs >= 0.43.2
    (the qlora extra); the term exists for published runs made with older releases."""
    if req.quant != "4bit" or not req.bnb_saves_inputs or spec.family != "decoder":
        return 0
    return width * (3 * spec.hidden_size + spec.intermediate_size)


def lm_head_terms(spec: ModelSpec, req: MemoryRequest, width: int) -> tuple[int, int, int]:
    """(saved, forward transient, backward transient) bytes per token of a causal-LM head and its loss, as
    transformers' ForCausalLMLoss runs it: logits at the matmul width, their fp32 copy for the cross entropy,
    whose log-softmax (fp32) stays for backward; backward holds its gradient and the softmax's (fp32).
    0 for the sequence classifier (its B x labels logits are negligible)."""
    if req.head != "causal_lm":
        return 0, 0, 0
    v = spec.vocab_size
    return 4 * v, (width + 4 if width != 4 else 4) * v, 8 * v
