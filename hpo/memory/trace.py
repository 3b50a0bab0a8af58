"""Trace estimate: two real training steps of the actual model on the ``meta`` device, recording live bytes.

The model is built from its config (never from weights) on ``meta``; a TorchDispatchMode registers every new
meta storage with a weakref finalizer, so the live total is exact at every operator. What it covers:

- fp32 and ``bf16_pure`` run natively. Autocast does not dispatch on meta: ``_Autocast`` emulates CUDA's
  (matmuls in fp16/bf16 with cached parameter casts, softmax/norms/losses in fp32, else type promotion).
- SDPA/flash are routed to the memory-efficient attention kernel (what CUDA runs with a padding mask);
  dropout to the fused kernel (bool mask); eager attention runs as written (s^2 scores are real tensors).
- Optimizers: torch AdamW/SGD(momentum)/Adafactor, ``foreach=True`` as on CUDA (temporaries included);
  ``adamw_8bit`` is a memory model (uint8 moments + fp32 absmax per 256). Clipping and a CE loss run.
- Two micro-steps per optimizer step: gradients are alive during a forward, as in any accumulation step.
- LoRA: A/B linears, dropout as peft, fp32, head trainable (peft's default). Not covered: 4/8-bit bases.
- ``head="causal_lm"``: the causal LM (vocab logits, fp32 cross entropy per token) instead of the classifier.
- Decoders with more than 4 trainable layers are traced with 2 and 3 and extrapolated linearly per phase.
"""

from __future__ import annotations

import math
import weakref
from contextlib import nullcontext
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from hpo.config.catalog import ModelSpec
from hpo.errors import ConfigError
from hpo.memory.budget import (
    CUBLAS_WORKSPACE,
    DEFAULT_ALLOCATOR,
    Allocator,
    Budget,
    MemoryRequest,
    device_budget,
)
from hpo.memory.meta_optim import make_optimizer
from hpo.memory.trace_model import model_from_config

_META = torch.device("meta")
# CUDA autocast lists (the ops HF encoders/decoders use): run in the low dtype / in fp32.
_LOW_OPS = {getattr(torch, n) for n in ["matmul", "mm", "bmm", "addmm", "baddbmm", "einsum"]}
_LOW_OPS |= {getattr(Tensor, n) for n in ["matmul", "__matmul__", "mm", "bmm"]} | {F.linear, F.conv1d}
_FP32_OPS = {getattr(m, n) for m in (torch, Tensor) for n in ["softmax", "log_softmax", "exp", "log", "pow"]}
_FP32_OPS |= {torch.rsqrt, Tensor.rsqrt, F.layer_norm, F.group_norm, F.softmax, F.log_softmax, F.kl_div}
_FP32_OPS |= {F.cross_entropy, F.nll_loss, F.mse_loss, F.binary_cross_entropy_with_logits, F.l1_loss}
_PHASES = ("fwd1", "bwd1", "fwd2", "bwd2", "step1", "fwd3", "bwd3", "fwd4", "bwd4", "step2")
_COMPONENTS = ("weights", "adapters", "gradients", "optimizer", "activations", "temporaries")


class _LiveBytes(TorchDispatchMode):
    """Live bytes of meta storages; each storage remembers its size, birth/death events and phase."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}  # storage _cdata -> storage id
        self.rows: list[list[Any]] = []  # storage id -> [nbytes, born, died (-1: alive), tag]
        self.now = self.event = 0
        self.phase = "weights"
        self.peaks: dict[str, tuple[int, int]] = {}  # phase -> (bytes, event)

    def add(self, t: Any, tag: str | None = None) -> None:
        if not isinstance(t, Tensor) or t.device != _META or t.untyped_storage()._cdata in self.live:
            return
        storage = t.untyped_storage()
        self.live[storage._cdata] = len(self.rows)
        self.rows.append([storage.nbytes(), self.event, -1, tag or self.phase])
        self.now, self.event = self.now + storage.nbytes(), self.event + 1
        if self.now > self.peaks.get(self.phase, (-1, 0))[0]:
            self.peaks[self.phase] = (self.now, self.event)
        weakref.finalize(storage, self._free, storage._cdata)

    def _free(self, key: int) -> None:
        row = self.rows[self.live.pop(key)]
        self.now, row[2], self.event = self.now - row[0], self.event, self.event + 1

    def sid(self, t: Tensor) -> int:
        return self.live[t.untyped_storage()._cdata]

    def start(self, phase: str) -> None:
        self.phase = phase
        self.peaks.setdefault(phase, (self.now, self.event))

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func is torch.ops.aten._local_scalar_dense.default and args[0].device == _META:  # say "padded"
            return False if args[0].dtype == torch.bool else 0
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            self.add(t)
        return out

    def breakdown(self, event: int, kinds: dict[int, str]) -> dict[str, int]:
        """Bytes live at ``event`` by component; ``kinds`` names the storages that are not activations."""
        comp = dict.fromkeys(_COMPONENTS, 0)
        for sid, (nbytes, born, died, tag) in enumerate(self.rows):
            if born < event and (died < 0 or died >= event):
                comp[kinds.get(sid, "activations" if tag.startswith("fwd") else "temporaries")] += nbytes
        return comp


class _Autocast(TorchFunctionMode):
    """CUDA-autocast emulation (``dtype`` set), fused dropout, and SDPA on the memory-efficient kernel."""

    def __init__(self, live: _LiveBytes, dtype: torch.dtype | None, flash: bool, cache: bool = True) -> None:
        super().__init__()
        self.live, self.dtype, self.flash, self.use_cache = live, dtype, flash, cache
        self.cache: dict[int, Tensor] = {}

    def _cast(self, x: Any, dtype: torch.dtype) -> Any:
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.dtype == dtype:
            return x
        if not (x.is_leaf and x.requires_grad and self.use_cache):  # autocast caches casts of parameters
            return x.to(dtype)
        if id(x) not in self.cache:
            self.cache[id(x)] = x.to(dtype)
            self.live.rows[self.live.sid(self.cache[id(x)])][3] = "cast"
        return self.cache[id(x)]

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            return self._sdpa(*args, **kwargs)
        if func is F.dropout:  # CUDA's fused kernel saves a bool mask
            x, p, training = [*args, kwargs.get("p", 0.5), kwargs.get("training", True)][:3]
            return torch.native_dropout(x, p, training)[0] if training and 0 < p < 1 else x
        if self.dtype is not None and func in _LOW_OPS:
            args = tuple(self._cast(a, self.dtype) for a in args)
        elif self.dtype is not None and func in _FP32_OPS:
            args = tuple(self._cast(a, torch.float32) for a in args)
        return func(*args, **kwargs)

    def _sdpa(self, q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None, **kw: Any) -> Tensor:
        if self.dtype is not None:
            q, k, v = (self._cast(t, self.dtype) for t in (q, k, v))
        if kw.get("enable_gqa") and k.shape[-3] != q.shape[-3]:
            k, v = (t.repeat_interleave(q.shape[-3] // t.shape[-3], dim=-3) for t in (k, v))
        bias = None
        if attn_mask is not None and not self.flash:
            if attn_mask.dtype == torch.bool:
                zeros = torch.zeros(attn_mask.shape, dtype=q.dtype, device=q.device)
                attn_mask = zeros.masked_fill_(attn_mask.logical_not(), -math.inf)
            bias = attn_mask.to(q.dtype).expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
        causal = kw.get("is_causal", False) and bias is None
        efficient = torch.ops.aten._scaled_dot_product_efficient_attention
        return efficient(q, k, v, bias, grad, kw.get("dropout_p", 0.0), causal, scale=kw.get("scale"))[0]


def _run(spec: ModelSpec, req: MemoryRequest, layers: int | None) -> dict[str, dict[str, int]]:
    """Trace two optimizer steps (two micro-steps each); the breakdown at each phase's peak."""
    model = model_from_config(spec, req, layers)
    model.train(req.mode == "train")
    low = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(req.precision)
    live, flash, kinds, loss = _LiveBytes(), req.attn_impl == "flash", dict[int, str](), None
    if req.grad_checkpointing and req.mode == "train":  # recomputation runs under the same emulation
        recompute = lambda: (nullcontext(), _Autocast(live, low, flash, cache=False))  # noqa: E731
        model.gradient_checkpointing_enable({"use_reentrant": False, "context_fn": recompute})
    with live:
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            live.add(t)
            kinds[live.sid(t)] = "adapters" if "lora_" in name else "weights"
        ids = torch.zeros(req.batch_size, req.max_length, dtype=torch.long, device=_META)
        causal = req.head == "causal_lm"  # a label per token; the logits upcast as ForCausalLMLoss does
        labels = torch.zeros(ids.numel() if causal else req.batch_size, dtype=torch.long, device=_META)
        mask = torch.ones_like(ids)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = make_optimizer(req.optimizer, params, req.foreach) if req.mode == "train" and params else None
        for phase in _PHASES:
            live.start(phase)
            if phase.startswith("fwd"):
                with _Autocast(live, low, flash), torch.set_grad_enabled(opt is not None):
                    logits = model(input_ids=ids, attention_mask=mask).logits
                    loss = F.cross_entropy(logits.float().flatten(0, 1) if causal else logits, labels)
                    del logits
                loss = loss if opt is not None else None
            elif phase.startswith("bwd") and loss is not None:
                loss.backward()
                loss = None
                kinds.update({live.sid(p.grad): "gradients" for p in params if p.grad is not None})
            elif phase.startswith("step") and opt is not None:
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                states = [t for st in opt.state.values() for t in st.values() if isinstance(t, Tensor)]
                kinds.update({live.sid(t): "optimizer" for t in states if t.device == _META})
                opt.zero_grad(set_to_none=True)
        if req.eval_batch_size and req.mode == "train":  # evaluation: no_grad, optimizer states resident
            live.start("eval")
            model.train(False)
            ids = torch.zeros(req.eval_batch_size, req.max_length, dtype=torch.long, device=_META)
            with _Autocast(live, low, flash), torch.no_grad():
                model(input_ids=ids, attention_mask=torch.ones_like(ids))
    return {ph: live.breakdown(ev, kinds) for ph, (_, ev) in live.peaks.items() if ph != "weights"}


def _grouped(runs: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """The training step (largest of forward, backward, optimizer step) and evaluation."""
    train = max((c for ph, c in runs.items() if ph != "eval"), key=lambda c: sum(c.values()))
    return {"train": train, **({"eval": runs["eval"]} if "eval" in runs else {})}


def _extrapolate(
    one: dict[str, dict[str, int]], two: dict[str, dict[str, int]], n: int
) -> dict[str, dict[str, int]]:
    """Per-phase linear extrapolation by ``n`` more layers."""
    return {
        ph: {k: two[ph][k] + n * (two[ph][k] - one[ph][k]) for k in _COMPONENTS} for ph in one.keys() & two
    }


@lru_cache(maxsize=256)
def _cached(spec: ModelSpec, req: MemoryRequest) -> tuple[tuple[str, tuple[tuple[str, int], ...]], ...]:
    k = req.frozen_layers
    if spec.family == "decoder" and spec.num_layers > k + 4:  # 2 and 3 layers: the per-layer cost is steady
        runs = _extrapolate(_run(spec, req, k + 2), _run(spec, req, k + 3), spec.num_layers - k - 3)
    else:
        runs = _run(spec, req, None)
    return tuple((ph, tuple(c.items())) for ph, c in _grouped(runs).items())


def trace_estimate(spec: ModelSpec, req: MemoryRequest, alloc: Allocator = DEFAULT_ALLOCATOR) -> Budget:
    """Exact logical peak of two training steps (and an evaluation batch) traced on the meta device."""
    if req.quant is not None:
        raise ConfigError("the trace does not cover 4/8-bit base weights", "use --method analytic")
    phases = {ph: dict(c) for ph, c in _cached(spec, req)}
    for comp in phases.values():
        comp["temporaries"] += CUBLAS_WORKSPACE
    return device_budget(phases, "trace", alloc)
