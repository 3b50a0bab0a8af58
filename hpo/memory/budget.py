"""What the estimator is asked (MemoryRequest) and what it answers (Budget), with the device-level constants.

Kept apart from the estimators themselves (``estimate``: arithmetic, ``trace``: meta-device run) so that both
build on it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from hpo.device.allocator import CUDA_CONTEXT, DEFAULT_ALLOCATOR, Allocator
from hpo.errors import ConfigError
from hpo.units import GIB, MIB

__all__ = ["CUDA_CONTEXT", "DEFAULT_ALLOCATOR", "Allocator"]

# cuBLAS/cuBLASLt workspaces, allocated through the caching allocator: 32 MiB per handle on Hopper, and the
# backward runs on autograd's device thread with a handle of its own. On an H200, hpo-tiny-bert's allocated
# peak was 30-40 MiB above its tensors + one workspace (tests/data/gpu/h200_encoders.csv).
CUBLAS_WORKSPACE = 64 * MIB
PHASES = ("train", "eval", "optimizer_step")
TENSOR_COMPONENTS = ("weights", "adapters", "gradients", "optimizer", "activations", "temporaries")
COMPONENTS = (*TENSOR_COMPONENTS, "cuda_context", "allocator_overhead")
# The allowed values, each defined once: `hpo estimate` takes its option types from these Literals (so --help
# lists them and Click names the flag of a bad value), MemoryRequest checks the tuples.
Precision = Literal["fp32", "fp16", "bf16", "bf16_pure"]
Optimizer = Literal["adamw", "adafactor", "sgd", "adamw_8bit"]
AttnImpl = Literal["sdpa", "eager", "flash"]
Quant = Literal["4bit", "8bit"]
Mode = Literal["train", "inference"]
Head = Literal["classifier", "causal_lm"]
Method = Literal["analytic", "trace"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
ATTN_IMPLS: tuple[str, ...] = get_args(AttnImpl)
QUANTS: tuple[str, ...] = get_args(Quant)
MODES: tuple[str, ...] = get_args(Mode)
HEADS: tuple[str, ...] = get_args(Head)


@dataclass(frozen=True)
class MemoryRequest:
    """One training (or inference) configuration, as far as memory is concerned."""

    batch_size: int
    max_length: int
    precision: str = "fp32"  # fp32 | fp16 | bf16 (autocast, fp32 master weights) | bf16_pure
    optimizer: str = "adamw"  # adamw | adafactor | sgd | adamw_8bit
    grad_checkpointing: bool = False
    lora_r: int = 0
    lora_targets: tuple[str, ...] = ("query", "value")
    lora_dropout: float = 0.0  # > 0: peft's nn.Dropout on each adapter's input (mask + dropped copy saved)
    head: str = "classifier"  # classifier (what hpo trains) | causal_lm (decoders: vocab logits + LM loss)
    bnb_saves_inputs: bool = False  # bitsandbytes < 0.43.2: each 4-bit linear kept its input (published runs)
    quant: str | None = None  # None | "4bit" | "8bit" (base weights)
    mode: str = "train"  # train | inference
    attn_impl: str = "sdpa"  # sdpa | eager | flash
    num_labels: int = 2
    frozen_layers: int = 0  # encoder layers (and embeddings) frozen: no grads/optimizer state for them
    eval_batch_size: int = 0  # evaluation phase (no_grad, optimizer state resident) at this batch; 0: none
    foreach: bool = True  # multi-tensor optimizer step (torch's CUDA default); False: one tensor at a time

    def __post_init__(self) -> None:
        checks = [
            (self.batch_size >= 1 and self.max_length >= 1, "batch size and max length must be >= 1"),
            (self.precision in PRECISIONS, f"precision '{self.precision}' is not one of {PRECISIONS}"),
            (self.optimizer in OPTIMIZERS, f"optimizer '{self.optimizer}' is not one of {OPTIMIZERS}"),
            (self.attn_impl in ATTN_IMPLS, f"attention '{self.attn_impl}' is not one of {ATTN_IMPLS}"),
            (self.quant is None or self.quant in QUANTS, f"quant '{self.quant}' is not one of {QUANTS}"),
            (self.mode in MODES, f"mode '{self.mode}' is not one of {MODES}"),
            (self.lora_r >= 0 and self.frozen_layers >= 0 and self.num_labels >= 1, "negative sizes"),
            (self.eval_batch_size >= 0, "eval batch size must be >= 0"),
            (0.0 <= self.lora_dropout < 1.0, f"lora dropout {self.lora_dropout} is not in [0, 1)"),
            (self.head in HEADS, f"head '{self.head}' is not one of {HEADS}"),
            (self.quant is None or self.lora_r > 0 or self.mode == "inference", "4/8-bit weights need LoRA"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"invalid memory request: {message}", "fix the option")


@dataclass(frozen=True)
class Budget:
    """Peak memory of a trial: components (of the largest phase) in bytes, the logical peak, the device-level
    total, and each phase's tensors + allocator overhead (the device total is their max + the context)."""

    components: dict[str, int] = field(hash=False)
    total_bytes: int  # logical tensor peak: torch.cuda.max_memory_allocated
    device_total_bytes: int  # what nvidia-smi shows: + CUDA context + allocator overhead
    method: str  # analytic | trace | ...+calibrated
    phases: dict[str, int] = field(default_factory=dict, hash=False)  # phase -> tensors + overhead
    factor: float = 1.0  # calibration factor applied (1.0: none)

    def gb(self, name: str) -> float:  # one component in GiB
        return self.components.get(name, 0) / GIB

    @property
    def total_gb(self) -> float:
        return self.total_bytes / GIB

    @property
    def device_total_gb(self) -> float:
        return self.device_total_bytes / GIB


def device_budget(
    tensors: dict[str, int] | dict[str, dict[str, int]],
    method: str,
    alloc: Allocator = DEFAULT_ALLOCATOR,
) -> Budget:
    """Add the CUDA context and allocator overhead to logical tensor components: one set, or one per phase
    (the peak is the phase with the largest tensors + overhead)."""
    per_phase: dict[str, Any] = (
        tensors if all(isinstance(v, dict) for v in tensors.values()) else {"train": tensors}
    )
    phases = {ph: {k: int(c.get(k, 0)) for k in TENSOR_COMPONENTS} for ph, c in per_phase.items()}
    sized = {ph: sum(c.values()) + alloc.overhead(c, ph) for ph, c in phases.items()}
    top = max(sized, key=lambda ph: sized[ph])
    comp = dict(phases[top])
    total = max(sum(c.values()) for c in phases.values())  # max_memory_allocated: the largest phase's tensors
    comp.update(cuda_context=alloc.context_bytes, allocator_overhead=alloc.overhead(comp, top))
    return Budget(comp, total, sized[top] + alloc.context_bytes, method, sized)


def fits(budget: Budget, gpu_bytes: int, headroom_bytes: int) -> tuple[bool, int]:
    """Whether the device-level total fits ``gpu_bytes`` minus headroom, and the margin in bytes."""
    margin = gpu_bytes - headroom_bytes - budget.device_total_bytes
    return margin >= 0, margin
