"""Batches for training and evaluation: padded to their longest member, optionally grouped by length.

The data is tokenized once, padded to the longest example of its split (never past ``max_length``); each
batch is then cut to its own longest member (rounded up to a multiple of 8 on CUDA, where tensor cores want
it), as HF's DataCollatorWithPadding does. ``padding="max_length"`` keeps every batch at full width (the
old behaviour, kept for comparison). Length grouping orders a shuffled epoch so that each window of
``group`` examples (an accumulation window) holds examples of similar length: the order depends on the
effective batch only, so every split of it (elastic forms, --on-oom shrink) sees the same windows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset

PAD_MULTIPLE_CUDA = 8
MEGABATCH_WINDOWS = 50  # windows sorted together (HF's LengthGroupedSampler uses 50 batches)
SEQUENCE_KEYS = ("input_ids", "attention_mask", "token_type_ids")
T = TypeVar("T")


def lengths_of(encoded: dict[str, torch.Tensor]) -> list[int]:
    """Real (unpadded) token count of each example."""
    return [int(n) for n in encoded["attention_mask"].sum(dim=1)]


class LengthGroupedSampler(Sampler[int]):
    """Windows (``group`` examples: one optimizer step) of similar lengths, new ones every epoch.

    Each epoch: a random permutation, cut into megabatches of up to MEGABATCH_WINDOWS windows (fewer on a
    small split, so that there are at least 4 and the windows change between epochs), each sorted by length
    and cut into windows. A megabatch's longest window runs first (an OOM shows at once), its other full
    windows in random order; a partial window (the split's last examples) stays last, so micro-batches never
    straddle two windows.
    """

    def __init__(self, lengths: list[int], group: int, seed: int) -> None:
        self.lengths, self.group = lengths, max(1, group)
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        g = self.group
        size = g * max(1, min(MEGABATCH_WINDOWS, len(order) // (4 * g)))
        for start in range(0, len(order), size):
            mega = sorted(order[start : start + size], key=lambda i: -self.lengths[i])
            windows = [mega[i : i + g] for i in range(0, len(mega), g)]
            partial = windows.pop() if len(windows[-1]) < g else []
            shuffled = torch.randperm(max(0, len(windows) - 1), generator=self.generator).tolist()
            rest = [windows[1 + j] for j in shuffled]
            for window in [*windows[:1], *rest, partial]:
                yield from window


def longest_first(encoded: dict[str, torch.Tensor]) -> list[int]:
    """Example indices from the longest to the shortest (ties in split order)."""
    lengths = lengths_of(encoded)
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def make_loader(
    encoded: dict[str, torch.Tensor],
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    group_by_length: int | None = None,
    targets: tuple[str, ...] = ("labels",),
    sort_by_length: bool = False,
) -> DataLoader:
    """A loader over the encoded model inputs and ``targets`` (the head's, hpo.train.heads); other encoded
    tensors (a span agent's offsets) stay out. ``group_by_length``: the window size to group lengths by;
    ``sort_by_length`` (evaluation, no shuffle): longest examples first, so that batches of similar lengths
    carry little padding and the widest batch runs first. ``loader.order`` lists the example index of each
    position (None: split order), for callers that need results in split order."""
    keys = [k for k in (*SEQUENCE_KEYS, *targets) if k in encoded]
    dataset = TensorDataset(*(encoded[k] for k in keys))
    generator = torch.Generator().manual_seed(seed)
    order = longest_first(encoded) if sort_by_length and not shuffle else None
    if order is not None:
        loader = DataLoader(dataset, batch_size=batch_size, sampler=order)
    elif shuffle and group_by_length:
        sampler = LengthGroupedSampler(lengths_of(encoded), group_by_length, seed)
        loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler)
    else:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)
    loader.keys = keys  # type: ignore[attr-defined]
    loader.order = order  # type: ignore[attr-defined]
    return loader


def in_split_order(loader: DataLoader, values: list[T]) -> list[T]:
    """``values`` (one per row, in loader order) rearranged into split order."""
    order: list[int] | None = getattr(loader, "order", None)
    if order is None:
        return values
    out = list(values)
    for position, index in enumerate(order):
        out[index] = values[position]
    return out


def batch_width(attention_mask: torch.Tensor, device: torch.device, dynamic: bool = True) -> int:
    """Columns a batch keeps: its longest member (to a multiple of 8 on CUDA), or all with fixed padding."""
    full = int(attention_mask.shape[1])
    if not dynamic:
        return full
    longest = int(attention_mask.sum(dim=1).max())
    if device.type == "cuda":
        longest = -(-longest // PAD_MULTIPLE_CUDA) * PAD_MULTIPLE_CUDA
    return max(1, min(full, longest))


def to_device(
    loader: DataLoader, tensors: list[torch.Tensor], device: torch.device, dynamic: bool = True
) -> dict[str, torch.Tensor]:
    """One batch as model inputs on ``device``, cut to its width (right padding: the cut drops only pads)."""
    batch = dict(zip(loader.keys, tensors, strict=True))  # type: ignore[attr-defined]
    width = batch_width(batch["attention_mask"], device, dynamic)
    return {
        k: (t[:, :width] if k in SEQUENCE_KEYS else t).to(device, non_blocking=True) for k, t in batch.items()
    }


def padded_length(longest: int, max_length: int, cuda: bool = True) -> int:
    """The widest batch the data can produce at ``max_length`` (what the memory estimate must cover)."""
    width = min(longest, max_length)
    return min(max_length, -(-width // PAD_MULTIPLE_CUDA) * PAD_MULTIPLE_CUDA) if cuda else width
