"""Extractive span answers: picking an example's answer over its stride windows, and SQuAD-v2 style metrics.

Prediction rule (as HF's ``postprocess_qa_predictions`` with a null threshold of 0): over every window of an
example, the best span is the highest ``start_logit[s] + end_logit[e]`` with s <= e, both tokens in the
context and at most ``max_tokens`` tokens long (only the ``n_best`` highest start and end logits of a window
are paired, as HF does). The null score is the lowest ``start_logit[0] + end_logit[0]`` (CLS) over the
windows. The answer is the best span's characters in the post, or no answer when the null score is higher.

Metrics (SQuAD v2): text is normalised (lower case, punctuation and the articles a/an/the removed,
whitespace collapsed) and split on whitespace. An answerable example scores the best token F1 (and exact
match) over its gold spans, 0 when no answer is predicted; an unanswerable one scores 1 when no answer is
predicted, else 0. ``span_f1``, the optimised metric, is the mean F1 over all examples; ``exact_match`` the
mean EM; ``no_answer_accuracy`` the share of examples whose has-answer/no-answer call is right.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

import torch

MAX_ANSWER_TOKENS = 128  # longest evidence span predicted (ReDSM5 sentences are far shorter)
N_BEST = 20  # start and end candidates per window
NOT_CONTEXT = -1  # offset of a token outside the post (question, special tokens, padding)

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def token_f1(prediction: str, gold: str) -> float:
    """Token-level F1 of two answers after normalisation (two empty answers score 1)."""
    pred, ref = normalize(prediction).split(), normalize(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when the normalised answers are equal."""
    return float(normalize(prediction) == normalize(gold))


def example_scores(prediction: str | None, golds: Sequence[str]) -> tuple[float, float]:
    """(F1, EM) of one example: ``prediction`` None = no answer; ``golds`` empty = unanswerable."""
    if not golds:
        hit = float(prediction is None)
        return hit, hit
    if prediction is None:
        return 0.0, 0.0
    return max(token_f1(prediction, g) for g in golds), max(exact_match(prediction, g) for g in golds)


def span_metrics(predictions: Sequence[str | None], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """span_f1, exact_match, no_answer_accuracy (and has_answer_f1 over answerable examples) of a split."""
    if len(predictions) != len(golds):
        raise ValueError(f"{len(golds)} examples but {len(predictions)} predictions")
    n = len(golds)
    if not n:
        return {"span_f1": 0.0, "exact_match": 0.0, "no_answer_accuracy": 0.0, "has_answer_f1": 0.0}
    scores = [example_scores(p, g) for p, g in zip(predictions, golds, strict=True)]
    answerable = [f for (f, _), g in zip(scores, golds, strict=True) if g]
    right_call = sum((p is None) == (not g) for p, g in zip(predictions, golds, strict=True))
    return {
        "span_f1": sum(f for f, _ in scores) / n,
        "exact_match": sum(e for _, e in scores) / n,
        "no_answer_accuracy": right_call / n,
        "has_answer_f1": sum(answerable) / len(answerable) if answerable else 0.0,
    }


def scored_span(
    windows: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    max_tokens: int = MAX_ANSWER_TOKENS,
    n_best: int = N_BEST,
) -> tuple[float, float, tuple[int, int] | None]:
    """(null score, best span score, the best span's (start, end) characters) over an example's windows.

    Each window is (start_logits, end_logits, offsets): logits over its tokens (cut to the batch width) and
    the (start char, end char) of each token in the post, NOT_CONTEXT for tokens outside it. The span is
    None (score -inf) when no window holds a token of the post.
    """
    null_score, best_score, best = float("inf"), -float("inf"), None
    for start_logits, end_logits, offsets in windows:
        width = min(len(start_logits), len(offsets))
        null_score = min(null_score, float(start_logits[0] + end_logits[0]))
        in_context = (offsets[:width, 0] != NOT_CONTEXT).nonzero().flatten()
        if not len(in_context):
            continue
        k = min(n_best, len(in_context))
        starts = in_context[start_logits[in_context].topk(k).indices].tolist()
        ends = in_context[end_logits[in_context].topk(k).indices].tolist()
        for s in starts:
            for e in ends:
                if e < s or e - s + 1 > max_tokens:
                    continue
                score = float(start_logits[s] + end_logits[e])
                if score > best_score:
                    best_score, best = score, (int(offsets[s, 0]), int(offsets[e, 1]))
    return null_score, best_score, best


def best_span(
    windows: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    max_tokens: int = MAX_ANSWER_TOKENS,
    n_best: int = N_BEST,
) -> tuple[int, int] | None:
    """The answer's (start, end) characters over an example's windows, or None for no answer (the null
    score is higher than the best span's; see ``scored_span``)."""
    null_score, best_score, best = scored_span(windows, max_tokens, n_best)
    return best if best is not None and best_score >= null_score else None
