"""Training throughput of hpo's loop against what users would run instead, on the same model, data, batch,
max_length and epochs: HF ``Trainer`` with ``DataCollatorWithPadding`` (pads per batch) and hpo's own loop
with every batch padded to max_length (what hpo did before dynamic padding). Each run trains and evaluates
on the validation split once per epoch; examples/s = training examples x epochs / wall seconds.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from hpo.agents.criteria import CriteriaAgent
from hpo.config.catalog import get_spec
from hpo.config.study import TrialConfig
from hpo.paths import SAMPLE_DATA_DIR
from hpo.train.data import PairExample, encode_pairs
from hpo.train.loop import train
from hpo.train.model import build_model, load_tokenizer


@dataclass(frozen=True)
class Setting:
    """One comparison: model, sequence bound, batch, epochs, training examples, CPU threads."""

    model: str = "all-MiniLM-L6-v2"
    max_length: int = 256
    batch_size: int = 16
    epochs: int = 1
    train_examples: int = 256
    threads: int = 2
    seed: int = 0


def _data(s: Setting) -> tuple[list[PairExample], list[PairExample]]:
    splits = CriteriaAgent().load_splits(SAMPLE_DATA_DIR, s.seed)
    return splits.train[: s.train_examples], splits.val


def _trial(s: Setting) -> TrialConfig:
    return TrialConfig(model=s.model, learning_rate=5e-5, batch_size=s.batch_size, max_length=s.max_length)


def _model(s: Setting) -> torch.nn.Module:
    spec = get_spec(s.model)
    return build_model(
        spec, num_labels=2, dropout=0.1, grad_checkpointing=False, frozen_layers=0, seed=s.seed
    )


def run_hpo(s: Setting, padding: str = "dynamic") -> float:
    """Seconds hpo's loop takes (``padding="max_length"``: every batch padded to max_length)."""
    train_ex, val_ex = _data(s)
    tok = load_tokenizer(get_spec(s.model))
    how = "max_length" if padding == "max_length" else "longest"
    train_data, val_data = (encode_pairs(tok, ex, s.max_length, how) for ex in (train_ex, val_ex))
    model, agent = _model(s), CriteriaAgent()
    start = time.perf_counter()
    train(
        model,
        _trial(s),
        train_data,
        val_data,
        score=agent.score,
        num_labels=2,
        epochs=s.epochs,
        patience=s.epochs + 1,
        device=torch.device("cpu"),
        seed=s.seed,
        eval_batch_size=s.batch_size,
        dynamic_padding=padding == "dynamic",
    )
    return time.perf_counter() - start


def run_trainer(s: Setting) -> float:
    """Seconds HF Trainer (DataCollatorWithPadding, eval each epoch, nothing saved or logged) takes."""
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, PrinterCallback, Trainer, TrainingArguments

    train_ex, val_ex = _data(s)
    tok = load_tokenizer(get_spec(s.model))

    def dataset(examples: list[PairExample]) -> Any:
        enc = tok(
            [e.text_a for e in examples],
            [e.text_b for e in examples],
            truncation=True,
            max_length=s.max_length,
        )
        return Dataset.from_dict({**enc, "labels": [e.label for e in examples]})

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=s.batch_size,
            per_device_eval_batch_size=s.batch_size,
            num_train_epochs=s.epochs,
            learning_rate=5e-5,
            eval_strategy="epoch",
            save_strategy="no",
            logging_strategy="no",
            report_to=[],
            use_cpu=True,
            seed=s.seed,
            dataloader_num_workers=0,
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=_model(s),
            args=args,
            train_dataset=dataset(train_ex),
            eval_dataset=dataset(val_ex),
            data_collator=DataCollatorWithPadding(tok),
        )
        trainer.remove_callback(PrinterCallback)  # no per-epoch log lines on stdout
        start = time.perf_counter()
        trainer.train()
        return time.perf_counter() - start


RUNS: dict[str, Callable[[Setting], float]] = {
    "hpo": run_hpo,
    "hf_trainer": run_trainer,
    "hpo_fixed_padding": lambda s: run_hpo(s, padding="max_length"),
}


def compare(s: Setting, repeat: int = 1) -> dict[str, float]:
    """Examples/s of each run (best of ``repeat``, runs interleaved, after one untimed warm-up of each on
    one batch) and the two ratios of the issue."""
    torch.set_num_threads(s.threads)
    warm_up = replace(s, train_examples=s.batch_size, epochs=1)
    for fn in RUNS.values():  # one-time costs (lazy imports, first kernels) land on no timed run
        fn(warm_up)
    best = dict.fromkeys(RUNS, float("inf"))
    for _ in range(repeat):
        for name, fn in RUNS.items():
            best[name] = min(best[name], fn(s))
    eps = {name: s.train_examples * s.epochs / seconds for name, seconds in best.items()}
    return {
        **{k: round(v, 2) for k, v in eps.items()},
        "ratio_vs_trainer": round(eps["hpo"] / eps["hf_trainer"], 3),
        "ratio_vs_fixed_padding": round(eps["hpo"] / eps["hpo_fixed_padding"], 3),
    }
