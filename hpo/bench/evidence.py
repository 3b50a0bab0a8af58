"""Does the evidence agent beat the no-answer baseline? One config trained on a sample, then how its null
decision ranks the validation pairs (``scripts/evidence_probe.py``).

The margin of a pair is its best span score minus its null score (``EvidenceScorer.margins``): the agent
answers when it is >= 0. If the margins rank answerable pairs above unanswerable ones (AUC well above 0.5),
a null threshold (HF's ``null_score_diff_threshold``) could turn that into span F1; if they do not, no
threshold helps and the model has not learnt whether a post holds evidence.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hpo.agents.evidence import EvidenceAgent
from hpo.agents.spans import example_scores, span_metrics
from hpo.config.catalog import get_spec
from hpo.config.study import TrialConfig
from hpo.paths import SAMPLE_DATA_DIR
from hpo.train.batching import make_loader
from hpo.train.loop import EpochResult, evaluate, train
from hpo.train.losses import make_loss
from hpo.train.model import build_model, load_tokenizer

Margins = Sequence[tuple[float, str | None]]


@dataclass(frozen=True)
class Probe:
    """One evidence-agent config and where it runs."""

    model: str = "all-MiniLM-L6-v2"
    data_dir: Path = SAMPLE_DATA_DIR
    epochs: int = 4
    learning_rate: float = 2e-4
    batch_size: int = 8
    max_length: int = 256
    warmup_ratio: float = 0.1
    seed: int = 42
    threads: int = 2
    device: str = "cpu"
    eval_batch_size: int = 32


def auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """P(a positive scores above a negative), ties counted half (0.5 when either side is empty)."""
    if not positives or not negatives:
        return 0.5
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def f1_at(margins: Margins, golds: Sequence[Sequence[str]], threshold: float) -> float:
    """span_f1 when a pair is answered only if its margin is >= ``threshold`` (0: the agent's rule)."""
    answers = [text if margin >= threshold else None for margin, text in margins]
    return span_metrics(answers, golds)["span_f1"]


def best_threshold(margins: Margins, golds: Sequence[Sequence[str]]) -> tuple[float, float]:
    """(span_f1, threshold) of the threshold that scores best on these pairs; ties: the higher threshold."""
    candidates = sorted({m for m, _ in margins} | {float("inf")})
    return max((f1_at(margins, golds, t), t) for t in candidates)


def run(p: Probe) -> dict[str, Any]:
    """Train ``p`` once; validation span F1 per epoch, the baseline, and how the margins rank the pairs."""
    torch.set_num_threads(p.threads)
    agent, spec = EvidenceAgent(), get_spec(p.model)
    tokenizer = load_tokenizer(spec)
    splits = agent.load_splits(p.data_dir, p.seed)
    encoded = {name: agent.encode(tokenizer, splits.get(name), p.max_length)[0] for name in ("train", "val")}
    model = build_model(
        spec,
        num_labels=2,
        dropout=0.1,
        grad_checkpointing=False,
        frozen_layers=0,
        seed=p.seed,
        auto_class=agent.head.auto_class,
    )
    cfg = TrialConfig(
        model=spec.name,
        learning_rate=p.learning_rate,
        batch_size=p.batch_size,
        max_length=p.max_length,
        warmup_ratio=p.warmup_ratio,
    )
    device, started = torch.device(p.device), time.monotonic()
    result = train(
        model.to(device),
        cfg,
        encoded["train"],
        encoded["val"],
        score=agent.scorer(splits.val, encoded["val"]),
        num_labels=2,
        epochs=p.epochs,
        patience=p.epochs + 1,
        device=device,
        seed=p.seed,
        eval_batch_size=p.eval_batch_size,
        head=agent.head,
        on_epoch=_progress(p.epochs),
    )
    seconds = time.monotonic() - started
    scored = {name: _margins(agent, model, splits.get(name), encoded[name], p) for name in ("train", "val")}
    margins = {name: m for name, (m, _) in scored.items()}
    golds = {name: g for name, (_, g) in scored.items()}
    val = list(zip(margins["val"], golds["val"], strict=True))
    pos = [m for (m, _), g in val if g]
    neg = [m for (m, _), g in val if not g]
    train_f1, train_threshold = best_threshold(margins["train"], golds["train"])
    oracle_f1, _ = best_threshold(margins["val"], golds["val"])
    forced = [example_scores(text, g)[0] for (_, text), g in val if g]
    by_epoch = [h.val_metric for h in result.history]
    baseline = agent.majority_baseline(splits)
    return {
        "model": p.model,
        "train_pairs": len(golds["train"]),
        "train_answerable": sum(bool(g) for g in golds["train"]),
        "val_pairs": len(golds["val"]),
        "val_answerable": len(pos),
        "val_span_f1_by_epoch": [round(v, 4) for v in by_epoch],
        "no_answer_baseline": round(baseline, 4),
        "beats_baseline": max(by_epoch) > baseline,
        "val_span_f1_final": round(f1_at(margins["val"], golds["val"], 0.0), 4),
        "val_margin_auc": round(auc(pos, neg), 4),
        "train_f1_at_train_threshold": round(train_f1, 4),
        "val_f1_at_train_threshold": round(f1_at(margins["val"], golds["val"], train_threshold), 4),
        "val_f1_at_val_threshold_optimistic": round(oracle_f1, 4),
        "val_answerable_f1_always_answering": round(sum(forced) / len(forced), 4) if forced else 0.0,
        "train_seconds": round(seconds, 1),
    }


def _progress(epochs: int) -> Callable[[EpochResult], None]:
    """A line on stderr per finished epoch (stdout carries only the JSON)."""

    def report(r: EpochResult) -> None:
        print(
            f"epoch {r.epoch + 1}/{epochs}: train loss {r.train_loss:.3f}, val loss {r.val_loss:.3f}, "
            f"val span F1 {r.val_metric:.3f} ({r.seconds:.0f} s)",
            file=sys.stderr,
            flush=True,
        )

    return report


def _margins(
    agent: EvidenceAgent, model: Any, examples: Any, encoded: Any, p: Probe
) -> tuple[Margins, list[tuple[str, ...]]]:
    """Each example's (margin, best span text), and its gold answers."""
    targets = agent.head.targets
    loader = make_loader(
        encoded, p.eval_batch_size, shuffle=False, seed=p.seed, targets=targets, sort_by_length=True
    )
    loss = make_loss("ce", label_smoothing=0.0, focal_gamma=0.0, weight=None)
    _, _, predictions = evaluate(model, loader, loss, torch.device(p.device), "fp32", head=agent.head)
    scorer = agent.scorer(examples, encoded)
    return scorer.margins(predictions), scorer.golds
