"""Dynamic padding and length grouping: batches never exceed max_length, the estimate follows the data."""

from __future__ import annotations

import torch

from hpo.agents.criteria import CriteriaAgent
from hpo.config.catalog import get_spec
from hpo.config.study import TrialConfig
from hpo.paths import SAMPLE_DATA_DIR
from hpo.train.batching import (
    MEGABATCH_WINDOWS,
    LengthGroupedSampler,
    batch_width,
    make_loader,
    padded_length,
    to_device,
)
from hpo.train.data import PairExample, encode_pairs
from hpo.train.model import load_tokenizer
from hpo.trial.sizing import MemoryPolicy, Sizer
from hpo.trial.training import EncodedData

TINY = get_spec("hpo-tiny-bert")
CPU = torch.device("cpu")


def examples(lengths: list[int]) -> list[PairExample]:
    return [
        PairExample("criterion", "word " * n, i % 2, f"p{i}", "s", "FATIGUE") for i, n in enumerate(lengths)
    ]


def test_a_batch_is_cut_to_its_longest_member_and_never_past_max_length() -> None:
    tok = load_tokenizer(TINY)
    data = encode_pairs(tok, examples([3, 9, 7, 200, 2, 4]), max_length=64)
    assert data["input_ids"].shape[1] == 64  # the longest pair, truncated at max_length
    loader = make_loader(data, 2, shuffle=False, seed=0)
    widths = []
    for tensors in loader:
        batch = to_device(loader, tensors, CPU)
        mask = batch["attention_mask"]
        widths.append(mask.shape[1])
        assert mask.shape[1] == int(mask.sum(dim=1).max()) <= 64  # no column of padding only
        assert batch["input_ids"].shape == batch["token_type_ids"].shape == mask.shape
    assert widths[0] < 64 and widths[1] == 64 and widths[2] < widths[1]
    fixed = encode_pairs(tok, examples([3, 5]), max_length=64, padding="max_length")
    assert to_device(loader, [fixed[k] for k in loader.keys], CPU, dynamic=False)["input_ids"].shape[1] == 64


def test_cuda_batches_round_up_to_a_multiple_of_8_within_max_length() -> None:
    mask = torch.zeros(2, 30, dtype=torch.long)
    mask[0, :13] = 1
    assert batch_width(mask, torch.device("cuda")) == 16 and batch_width(mask, CPU) == 13
    mask[1, :] = 1
    assert batch_width(mask, torch.device("cuda")) == 30  # never past the tensor (max_length)
    assert padded_length(13, 512) == 16 and padded_length(600, 512) == 512 and padded_length(13, 14) == 14


def test_length_groups_are_a_permutation_of_sorted_windows() -> None:
    lengths = [(i * 37) % 101 for i in range(1002)]
    order = list(LengthGroupedSampler(lengths, group=4, seed=1))
    assert sorted(order) == list(range(1002))
    windows = [[lengths[i] for i in order[s : s + 4]] for s in range(0, 1002, 4)]
    assert all(w == sorted(w, reverse=True) for w in windows)  # each window from one sorted megabatch
    mega = 4 * MEGABATCH_WINDOWS
    for start in range(0, 1000, mega):  # a megabatch's longest window first, the others not in length order
        firsts = [w[0] for w in windows[start // 4 : (start + mega) // 4]]
        assert firsts[0] == max(firsts) and firsts[1:] != sorted(firsts[1:], reverse=True)
    assert len(windows[-1]) == 2  # the partial window stays last
    assert order != list(LengthGroupedSampler(lengths, group=4, seed=2))  # shuffled by the seed
    again = LengthGroupedSampler(lengths, group=4, seed=1)
    assert list(again) == order and list(again) != order  # a new order every epoch


def test_a_small_split_gets_new_windows_every_epoch() -> None:
    """A split smaller than one megabatch is cut into at least 4: the windows differ between epochs (one
    megabatch sorted whole gave every epoch the same windows in the same order)."""
    lengths = [(i * 7) % 23 for i in range(96)]
    sampler = LengthGroupedSampler(lengths, group=8, seed=0)
    epochs = [list(sampler) for _ in range(2)]
    windows = [{frozenset(e[s : s + 8]) for s in range(0, 96, 8)} for e in epochs]
    assert windows[0] != windows[1]


def test_the_estimate_covers_the_widest_batch_the_data_gives() -> None:
    splits = CriteriaAgent().load_splits(SAMPLE_DATA_DIR, seed=0)
    data = EncodedData(splits)
    widest = data.longest(TINY, 512)
    assert widest < 512 and widest % 8 == 0  # the sample's pairs are far shorter than 512 tokens
    train, val = data.get(TINY, 512)
    assert max(int(t["attention_mask"].sum(dim=1).max()) for t in (train, val)) <= widest
    tcfg = TrialConfig(model=TINY.name, learning_rate=1e-4, batch_size=16, max_length=512)
    at_max = Sizer(MemoryPolicy(None, 0), 2).estimate(TINY, tcfg)
    real = Sizer(MemoryPolicy(None, 0), 2, longest=data.longest).estimate(TINY, tcfg)
    assert real.device_total_bytes < at_max.device_total_bytes
    assert EncodedData(splits, padding="max_length").longest(TINY, 512) == 512


def test_the_cached_tokenization_is_the_direct_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from hpo.train.tokenized import encode_cached

    tok = load_tokenizer(TINY)
    pairs = examples([3, 9, 7, 200, 2, 4])
    direct = encode_pairs(tok, pairs, 64)
    first, fresh = encode_cached(tok, pairs, 64, "longest", tmp_path)
    again, fresh_again = encode_cached(tok, pairs, 64, "longest", tmp_path)
    assert fresh and not fresh_again
    assert all(torch.equal(direct[k], first[k]) and torch.equal(direct[k], again[k]) for k in direct)
    other, _ = encode_cached(tok, pairs, 32, "longest", tmp_path)  # another max_length: another entry
    assert other["input_ids"].shape[1] == 32


class _LengthParity(torch.nn.Module):
    """Predicts the parity of each example's real length: a result that depends on which example it is."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: torch.Tensor) -> object:
        odd = (attention_mask.sum(dim=1) % 2).float()
        return type("Out", (), {"logits": torch.stack([1 - odd, odd], dim=1)})()


def test_evaluation_runs_longest_first_and_reports_in_split_order() -> None:
    from hpo.train.loop import evaluate
    from hpo.train.losses import make_loss

    tok = load_tokenizer(TINY)
    data = encode_pairs(tok, examples([3, 40, 7, 200, 2, 15, 9]), max_length=64)
    lengths = [int(n) for n in data["attention_mask"].sum(dim=1)]
    loader = make_loader(data, 2, shuffle=False, seed=0, sort_by_length=True)
    widths = [to_device(loader, t, CPU)["attention_mask"].shape[1] for t in loader]
    assert widths == sorted(widths, reverse=True) and widths[0] == max(lengths)  # widest batch first
    unsorted = make_loader(data, 2, shuffle=False, seed=0)
    assert sum(widths) < sum(to_device(unsorted, t, CPU)["attention_mask"].shape[1] for t in unsorted)
    loss, gold, pred = evaluate(
        _LengthParity(),
        loader,
        make_loss("ce", label_smoothing=0.0, focal_gamma=2.0, weight=None),
        CPU,
        "fp32",
    )
    assert gold == data["labels"].tolist() and pred == [n % 2 for n in lengths]
    loss_unsorted, gold_unsorted, pred_unsorted = evaluate(
        _LengthParity(),
        unsorted,
        make_loss("ce", label_smoothing=0.0, focal_gamma=2.0, weight=None),
        CPU,
        "fp32",
    )
    assert (gold_unsorted, pred_unsorted) == (gold, pred) and abs(loss - loss_unsorted) < 1e-6


def test_cpu_optimizers_run_fused_and_the_trace_keeps_foreach() -> None:
    from hpo.train.optim import build_optimizer, optimizer_groups

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    for name in ("adamw", "sgd"):
        opt = build_optimizer(name, optimizer_groups(model, 0.01), 1e-3)
        assert opt.defaults["fused"] is True  # as HF Trainer's default adamw_torch_fused
        assert build_optimizer(name, model.parameters(), 1e-3, foreach=True).defaults["fused"] is None
    meta = [torch.nn.Parameter(torch.zeros(3, device="meta"))]
    assert build_optimizer("adamw", meta, 1e-3).defaults["fused"] is None  # not on CPU: torch chooses
