"""Analytic estimate of the GPU memory peak of one training (or inference) step, as a breakdown.

Pure arithmetic on the model dimensions (~15 us per call, scripts/bench_estimator.py). The peak is that of a
gradient-accumulation micro-step (gradients of the previous micro-step and optimizer states alive during the
forward): it bounds every accumulation setting, so accumulation is not an input, by construction (for
grad_accum = 1 it is conservative by at most the smaller of gradients and activations).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hpo.config.catalog import ModelSpec
from hpo.errors import ConfigError
from hpo.memory.budget import (
    CUBLAS_WORKSPACE,
    DEFAULT_ALLOCATOR,
    Allocator,
    Budget,
    MemoryRequest,
    device_budget,
    fits,
)
from hpo.memory.lora import bnb_inputs_saved, dropout_saved, lm_head_terms, shared_inputs, target_dims


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts of the classifier (backbone + head) under one request."""

    total: int
    quantizable: int  # linear weights inside the layers (what bitsandbytes quantizes)
    trainable: int  # base parameters with gradients (adapters excluded)
    adapters: int  # LoRA parameters (kept in fp32)
    shapes: tuple[tuple[int, int, int], ...]  # (rows, cols, count) of trainable tensors, for Adafactor/8-bit
    layer_linear: int  # linear weights of one layer


def _shapes(spec: ModelSpec) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    """(rows, cols, count) of the embedding tensors (decoders: + final norm) and of one layer's tensors."""
    e, h, i = spec.emb_size, spec.hidden_size, spec.intermediate_size
    if spec.family == "decoder":
        kvd = spec.kv_heads * (h // spec.num_heads)
        bias = [(h + 2 * kvd, 1, 1)] if spec.arch == "qwen2" else []
        return [(spec.vocab_size, h, 1), (h, 1, 1)], [
            (h, h, 2),
            (kvd, h, 2),
            (i, h, 2),
            (h, i, 1),
            (h, 1, 2),
            *bias,
        ]
    layer = [(h, h, 4), (h, 1, 4), (i, h, 1), (i, 1, 1), (h, i, 1), (h, 1, 5)]
    hf = spec.extra.get("hf_config") or {}  # DeBERTa-v3: relative embeddings instead of absolute positions
    pos = spec.max_position_embeddings if hf.get("position_biased_input", True) else _buckets(spec)
    emb = [(spec.vocab_size, e, 1), (pos, e, 1), (spec.type_vocab_size, e, 1), (e, 1, 2)]
    return emb + ([(h, e, 1), (h, 1, 1)] if e != h else []), layer


def param_counts(spec: ModelSpec, req: MemoryRequest) -> ParamCounts:
    """Counts from the dimensions: embeddings, layers, head (pooler/dense + classifier, or score)."""
    h, n = spec.hidden_size, spec.num_layers
    emb, layer = _shapes(spec)
    head = [(req.num_labels, h, 1)]  # decoder: score; encoder: + pooler/dense and biases
    head += [] if spec.family == "decoder" else [(h, h, 1), (h, 1, 1), (req.num_labels, 1, 1)]
    if req.head == "causal_lm":  # untied LM head (tied: the embedding itself); LoRA leaves it frozen
        head = [] if spec.tie_embeddings else [(spec.vocab_size, h, 1)]
    numel = lambda shapes: sum(r * c * k for r, c, k in shapes)  # noqa: E731
    linear = numel([s for s in layer if s[1] > 1])
    frozen = min(req.frozen_layers, n)
    dims = target_dims(spec, req.lora_targets) if req.lora_r else []
    adapters = (n - frozen) * sum(req.lora_r * (a + b) for a, b in dims)
    full = ([] if frozen else emb) + [(r, c, k * (n - frozen)) for r, c, k in layer] + head
    shapes = (head if req.head == "classifier" else []) if req.lora_r else full  # LoRA: adapters + head
    total = numel(emb) + n * numel(layer) + numel(head)
    return ParamCounts(total, n * linear, numel(shapes), adapters, tuple(shapes), linear)


def _buckets(spec: ModelSpec) -> int:  # DeBERTa's relative-position span 2k
    return 2 * int((spec.extra.get("hf_config") or {}).get("position_buckets", 256))


def _widths(req: MemoryRequest) -> tuple[int, int, bool]:
    """(matmul output bytes, residual-stream bytes, autocast) for the precision."""
    return {"fp32": (4, 4, False), "bf16_pure": (2, 2, False)}.get(req.precision, (2, 4, True))


def _layer_saved(spec: ModelSpec, req: MemoryRequest, tw: bool) -> float:
    """Bytes per token one layer saves for backward (tw: its linear weights are trainable)."""
    h, i, a, s = spec.hidden_size, spec.intermediate_size, spec.num_heads, req.max_length
    kvd = spec.kv_heads * (h // a)
    c, r, ac = _widths(req)
    lse = 4 * a * (-(-s // 32) * 32) / s
    dims = target_dims(spec, req.lora_targets)  # adapter input cast copies (autocast: bf16; bf16 base: fp32)
    lora = sum(req.lora_r * c + (2 * d if ac else 4 * d if r == 2 else 0) for d, _ in dims)
    lora += dropout_saved(spec, req)
    lin_in = lambda n: (n * 2 * h if ac else r * h) if tw else 0  # noqa: E731  inputs saved by n linears
    if spec.family == "decoder":  # RMSNorm saves its fp32 input, and its normalized output if trainable
        norms = 2 * (4 * h + 4 + ((4 * h if r == 4 else 2 * h) if tw else 0))
        rep = spec.kv_heads != a  # GQA: K/V repeated to all heads before SDPA when a padding mask exists
        qkv = (2 if ac else c) * (h + (2 * h if rep else 2 * kvd))  # rotated q, k and v as SDPA saves them
        attn: float
        if req.attn_impl == "eager":
            attn = a * s * (4 + (c if c != 4 else 0)) + (c * h if tw else 0)  # softmax (fp32) + cast copy
        else:
            attn = c * h + lse + (0 if req.attn_impl == "flash" else c * s)
        fp32_adapters_in = req.lora_r and not tw and not ac and r == 4  # they keep their shared inputs
        x_lora = r * shared_inputs(spec, req.lora_targets) if fp32_adapters_in else 0
        # 4/8-bit linears return their input's dtype (bitsandbytes: fp32 under autocast, the residual stream
        # and norms being fp32 after prepare_model_for_kbit_training): gate/up and the activation in fp32
        cq = 4 if req.quant and ac else c
        mlp = lin_in(2) + 3 * cq * i + (c * i if tw else 0)
        bnb = bnb_inputs_saved(spec, req, c)
        return norms + lin_in(3) + x_lora + qkv + attn + mlp + (lora if req.lora_r else 0) + bnb
    drop, attn = 2 * h, 0.0  # two hidden dropout masks (bool)
    if spec.arch.startswith("deberta") or req.attn_impl == "eager":
        attn = a * s * (r + 1 + c) + (c * h if tw else 0)  # softmax, dropout mask, dropout output
        if spec.arch.startswith("deberta"):
            k2 = _buckets(spec)
            attn += c * h + 2 * c * k2 * h / s + 2 * a * k2 * c  # scaled key, repeated pos q/k, c2p + p2c
    else:
        attn = c * h + lse + (0 if req.attn_impl == "flash" else c * s)
    x_in = lin_in(3) if tw or not req.lora_r or ac or r == 2 else r * h
    norms_mlp = 2 * (r * h + 8) + lin_in(1) + c * i + (c * i if tw else 0)  # LN inputs, GELU in/out
    return x_in + (lora if req.lora_r else 0) + 3 * c * h + attn + drop + norms_mlp


def activation_bytes(spec: ModelSpec, req: MemoryRequest) -> tuple[int, int, int]:
    """(saved activations at the end of the forward, forward transient, backward transient) in bytes."""
    tokens, h, i = req.batch_size * req.max_length, spec.hidden_size, spec.intermediate_size
    c, r, _ = _widths(req)
    n, frozen = spec.num_layers, min(req.frozen_layers, spec.num_layers)
    a, s, dec, deberta = (
        spec.num_heads,
        req.max_length,
        spec.family == "decoder",
        spec.arch.startswith("deberta"),
    )
    eager = req.attn_impl == "eager" or deberta
    # inference (and fully frozen layers): nothing saved, the transients of one layer (MLP, attention scores)
    mlp = 3 * c * i + 4 * r * h if dec else 2 * c * i + 3 * r * h
    attn = a * s * (4 + 2 * c) if eager else (0 if req.attn_impl == "flash" else s * (c + 3))
    # DeBERTa: c2p/p2c scores; + 16 h per token: deberta-v3-large's eval is 3 % above the rest (meta trace)
    no_grad_tmp = tokens * (mlp + attn + (4 * a * c * _buckets(spec) + 16 * h if deberta else 0))
    if req.mode == "inference":
        return 0, int(no_grad_tmp), 0
    tw = req.lora_r == 0
    per_layer = _layer_saved(spec, req, tw)
    emb = r * h + 8 + h if tw and not frozen and not dec else 0  # encoder embedding LayerNorm + dropout
    head = 2 * r * h + (4 * h if dec else 0)
    score_tmp = c * a * s if eager else (0 if req.attn_impl == "flash" else s)  # raw scores / bool mask
    attn_tmp = score_tmp * (4 if deberta else 1)  # DeBERTa also holds the c2p/p2c score matrices
    saved: float
    if req.grad_checkpointing:  # layer inputs only; backward recomputes one layer at a time
        saved = tokens * ((n - frozen) * r * h + emb + head)
        fwd_tmp, bwd_tmp = tokens * (2 * c * i + attn_tmp), tokens * (per_layer + 2 * r * h + score_tmp)
    else:
        saved = tokens * ((n - frozen) * per_layer + emb + head)
        fwd_tmp, bwd_tmp = tokens * ((c * i + r * h if dec else 3 * r * h) + attn_tmp), tokens * 3 * r * h
    fwd_tmp = max(fwd_tmp, no_grad_tmp) if frozen == n else fwd_tmp
    lm_saved, lm_fwd, lm_bwd = lm_head_terms(spec, req, c)  # the loss runs after the layers, before backward
    saved, fwd_tmp, bwd_tmp = (
        saved + tokens * lm_saved,
        max(fwd_tmp, tokens * lm_fwd),
        bwd_tmp + tokens * lm_bwd,
    )
    return int(saved), int(fwd_tmp), int(bwd_tmp)


def estimate(spec: ModelSpec, req: MemoryRequest, alloc: Allocator = DEFAULT_ALLOCATOR) -> Budget:
    """Analytic peak of ``req`` on ``spec`` (pure arithmetic, no torch): the largest of the training step
    (forward, backward), the optimizer step and, with ``req.eval_batch_size``, evaluation."""
    return device_budget(phase_tensors(spec, req), "analytic", alloc)


def phase_tensors(spec: ModelSpec, req: MemoryRequest) -> dict[str, dict[str, int]]:
    """Tensor components at the peak of each phase: train, optimizer_step (train mode), eval."""
    counts = param_counts(spec, req)
    c, _, ac = _widths(req)
    wbytes = 2 if req.precision == "bf16_pure" else 4
    qbytes = {None: wbytes, "4bit": 0.53, "8bit": 1.02}[req.quant]
    weights = counts.quantizable * qbytes + (counts.total - counts.quantizable) * wbytes
    comp = {"weights": int(weights), "adapters": counts.adapters * 4}
    trained_layers = spec.num_layers - min(req.frozen_layers, spec.num_layers)
    # autocast's low-precision weight copies: it caches those of trainable leaf weights for the whole forward
    # (also under no_grad); a frozen weight's copy lives one layer, unless autograd saves it for backward
    # (no checkpointing: every trained layer's, LoRA's frozen base included). Measured on an H200: a 7B LoRA
    # with checkpointing holds one layer's copies (tests/data/gpu/h200_lora.csv).
    layer_cast = 2 * counts.layer_linear if ac else 0
    cast = layer_cast * trained_layers
    cached = cast if req.lora_r == 0 else 0
    fwd_cast = layer_cast if req.grad_checkpointing and req.lora_r else cast
    all_casts = cached + (layer_cast if req.lora_r or trained_layers < spec.num_layers else 0)
    if req.quant:  # dequantized weight of the largest linear, forward and backward
        cast = fwd_cast = all_casts = 2 * c * max(spec.hidden_size, spec.intermediate_size) * spec.hidden_size
    saved, fwd_tmp, bwd_tmp = activation_bytes(spec, req)
    if req.mode == "train":
        comp["gradients"] = counts.trainable * wbytes + counts.adapters * 4
        comp["optimizer"] = _optimizer_bytes(req.optimizer, counts.shapes, wbytes, counts.adapters)
    ws = CUBLAS_WORKSPACE
    bwd_cast = layer_cast if ac and req.grad_checkpointing else cast
    fwd, bwd = (saved, fwd_tmp + fwd_cast), (saved, bwd_tmp + bwd_cast)
    act, tmp = max(fwd, bwd, key=lambda p: p[0] + p[1])
    out = {"train": {**comp, "activations": act, "temporaries": tmp + ws}}
    if req.mode == "train":  # foreach AdamW: sqrt of every second moment at once; Adafactor: every variance
        largest = max((r * cc for r, cc, _ in counts.shapes), default=0)
        step = (counts.trainable + counts.adapters) * wbytes if req.foreach else largest * wbytes
        step = 3 * largest * wbytes if req.optimizer == "adafactor" else step  # transformers': per tensor
        step = step if req.optimizer in ("adamw", "adafactor") else 0
        out["optimizer_step"] = {**comp, "activations": 0, "temporaries": step + ws}
    if req.eval_batch_size:  # no_grad at the eval batch; gradients freed (set_to_none), states resident
        _, eval_tmp, _ = activation_bytes(
            spec, replace(req, mode="inference", batch_size=req.eval_batch_size)
        )
        resident = {**comp, "gradients": 0}
        out["eval"] = {**resident, "activations": 0, "temporaries": eval_tmp + all_casts + ws}
    return out


_STATES = {  # optimizer-state bytes of one (rows, cols) tensor whose parameter has w bytes per element
    "adamw": lambda r, c, w: 2 * r * c * w,
    "sgd": lambda r, c, w: r * c * w,  # momentum buffer
    "adafactor": lambda r, c, w: (r + c) * w if c > 1 else r * w,  # factored second moment
    "adamw_8bit": lambda r, c, w: 2 * r * c + 8 * -(-r * c // 256) if r * c >= 4096 else 8 * r * c,
}


def _optimizer_bytes(name: str, shapes: tuple[tuple[int, int, int], ...], wbytes: int, adapters: int) -> int:
    """Optimizer state bytes of the trainable tensors (``shapes``: rows, cols, count) and fp32 adapters."""
    per_adapter = {"adamw": 8, "adamw_8bit": 2}.get(name, 4)
    return sum(_STATES[name](r, c, wbytes) * n for r, c, n in shapes) + adapters * per_adapter


def budget(
    spec: ModelSpec, req: MemoryRequest, method: str = "analytic", alloc: Allocator = DEFAULT_ALLOCATOR
) -> Budget:
    """The estimate by ``method``: analytic (arithmetic) or trace (meta-device run, see trace.py)."""
    if method == "analytic":
        return estimate(spec, req, alloc)
    if method == "trace":
        from hpo.memory.trace import trace_estimate  # lazy: the trace imports torch

        return trace_estimate(spec, req, alloc)
    raise ConfigError(f"unknown estimate method '{method}'", "use analytic or trace")


def max_batch_size(
    spec: ModelSpec,
    req: MemoryRequest,
    gpu_bytes: int,
    headroom_bytes: int,
    method: str = "analytic",
    alloc: Allocator = DEFAULT_ALLOCATOR,
) -> int:
    """Largest batch size whose estimate fits (memory is monotone in batch size); 0 if none.

    A binary search over the analytic estimate; for another method (a trace costs seconds) the analytic
    answer brackets a short search.
    """

    def ok(batch: int, how: str) -> bool:
        return (
            batch == 0
            or fits(budget(spec, replace(req, batch_size=batch), how, alloc), gpu_bytes, headroom_bytes)[0]
        )

    lo, hi = 0, 1 << 16  # ok(lo) and not ok(hi)
    if method != "analytic":
        guess = max_batch_size(spec, req, gpu_bytes, headroom_bytes, alloc=alloc)
        lo, hi = max(0, guess // 2), max(2, guess * 2)
        while lo > 0 and not ok(lo, method):
            lo, hi = lo // 2, lo
        while ok(hi, method) and hi < 1 << 14:
            lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid, method) else (lo, mid)
    return lo
