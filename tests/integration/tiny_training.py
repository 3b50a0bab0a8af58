"""Tiny-BERT training on a fixed slice of the sample data, shared by the tests that compare trainings."""

from __future__ import annotations

from typing import Any

import torch

from hpo.agents.criteria import CriteriaAgent
from hpo.config.catalog import get_spec
from hpo.config.study import TrialConfig
from hpo.paths import SAMPLE_DATA_DIR
from hpo.train.data import PairExample, encode_pairs
from hpo.train.loop import train
from hpo.train.model import build_model, load_tokenizer

TINY = get_spec("hpo-tiny-bert")
AGENT = CriteriaAgent()
SPLITS = AGENT.load_splits(SAMPLE_DATA_DIR, seed=0)
TOK = load_tokenizer(TINY)
# 1:3 imbalanced, like real criteria data (on a perfectly balanced set class weighting would be a no-op)
_POS = [e for e in SPLITS.train if e.label == 1][:24]
_NEG = [e for e in SPLITS.train if e.label == 0][:72]
TRAIN = [e for pair in zip(_NEG[::3], _NEG[1::3], _NEG[2::3], _POS, strict=True) for e in pair]


def run(
    cfg: TrialConfig,
    epochs: int = 1,
    examples: list[PairExample] = TRAIN,
    padding: str = "dynamic",
    group_by_length: bool = False,
) -> tuple[dict[str, torch.Tensor], Any, torch.nn.Module]:
    data = encode_pairs(TOK, examples, cfg.max_length, "max_length" if padding == "max_length" else "longest")
    model = build_model(
        TINY,
        num_labels=2,
        dropout=cfg.dropout,
        grad_checkpointing=cfg.grad_checkpointing,
        frozen_layers=cfg.frozen_layers,
        seed=0,
    )
    result = train(
        model,
        cfg,
        data,
        data,
        score=AGENT.score,
        num_labels=2,
        epochs=epochs,
        patience=9,
        device=torch.device("cpu"),
        seed=0,
        dynamic_padding=padding == "dynamic",
        group_by_length=group_by_length,
    )
    return {k: v.detach().float().clone() for k, v in model.state_dict().items()}, result, model
