"""The evidence agent: where in the post is the evidence for a DSM-5 criterion? Extractive QA over the post.

One example per annotated (post, symptom) pair: the question is the criterion's description, the context the
whole post. Its gold spans are the characters of the symptom's status-1 sentences in the post (several are
allowed: the metric takes the best over them, as SQuAD does); a pair whose sentences all have status 0 is
unanswerable (the annotators looked and found no evidence: the hard negatives). Symptoms a post was never
annotated for are not examples: they would be easy negatives that swamp the metric.

Long posts are cut into stride windows (a fast tokenizer's overflowing tokens, ``truncation="only_second"``,
the question repeated in each). A window is trained on the first gold span lying wholly inside it, or on
CLS (position 0, no answer) when none does. Windows are the batch rows in training and evaluation; the
metric picks each example's answer over all its windows (``hpo.agents.spans``) and is ``span_f1``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hpo.agents.base import Tensors
from hpo.agents.criteria import DSM5_DESCRIPTIONS
from hpo.agents.spans import NOT_CONTEXT, best_span, scored_span, span_metrics
from hpo.config.study import SpaceConfig
from hpo.errors import ConfigError, DataError
from hpo.train.data import PairExample, Splits, grouped_split, read_redsm5
from hpo.train.heads import SPAN
from hpo.train.tokenized import cache_key, cached_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpanExample(PairExample):
    """A (description, post) example; ``answers``: the gold (start, end) characters in the post (text_b)."""

    answers: tuple[tuple[int, int], ...] = ()

    def answer_texts(self) -> tuple[str, ...]:
        return tuple(self.text_b[s:e] for s, e in self.answers)


def locate(post: str, sentence: str) -> tuple[int, int] | None:
    """The sentence's (start, end) characters in the post: exact, else ignoring case and whitespace runs."""
    start = post.find(sentence)
    if start >= 0:
        return start, start + len(sentence)
    words = sentence.split()
    if not words:
        return None
    found = re.search(r"\s+".join(map(re.escape, words)), post, flags=re.IGNORECASE)
    return (found.start(), found.end()) if found else None


def span_examples(rows: list[dict[str, str]], posts: dict[str, str]) -> list[SpanExample]:
    """One example per annotated (post, symptom) pair, in the annotations' order."""
    pairs: dict[tuple[str, str], list[dict[str, str]]] = {}
    for row in rows:
        pairs.setdefault((row["post_id"], row["DSM5_symptom"]), []).append(row)
    examples, missing = [], 0
    for (post_id, symptom), group in pairs.items():
        post, present = posts[post_id], [r for r in group if r["status"] == "1"]
        spans = [locate(post, r["sentence_text"]) for r in present]
        missing += sum(s is None for s in spans)
        found = tuple(sorted(s for s in spans if s is not None))
        if present and not found:
            continue  # evidence exists but cannot be placed: not a negative either
        examples.append(
            SpanExample(
                text_a=DSM5_DESCRIPTIONS[symptom],
                text_b=post,
                label=int(bool(found)),
                post_id=post_id,
                sentence_id=",".join(r["sentence_id"] for r in present),
                symptom=symptom,
                answers=found,
            )
        )
    if missing:
        log.warning("%d status-1 sentence(s) are not found in their post's text and are ignored", missing)
    if not any(ex.answers for ex in examples):
        raise DataError(
            "no status-1 sentence is found in its post's text", "posts must contain their sentences"
        )
    return examples


MIN_ROOM = 8  # tokens of the post a window must hold beside the question


def question_tokens(tokenizer: Any, questions: Sequence[str]) -> int:
    """Tokens the longest question and the special tokens take in every window (fast tokenizers only)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            f"the evidence agent needs a fast tokenizer (offsets), {type(tokenizer).__name__} is not one",
            "use a model with a fast (Rust) tokenizer",
        )
    longest = max(len(tokenizer(q, add_special_tokens=False)["input_ids"]) for q in set(questions))
    return int(longest + tokenizer.num_special_tokens_to_add(pair=True))


def window_stride(tokenizer: Any, examples: Sequence[PairExample], max_length: int) -> int:
    """Tokens shared by neighbouring windows: a third of the room the longest question leaves (HF's QA
    examples share 128 of 384)."""
    question = question_tokens(tokenizer, [e.text_a for e in examples])
    room = max_length - question
    if room < MIN_ROOM:
        raise ConfigError(
            f"max_length {max_length} leaves {room} tokens of the post beside a {question}-token criterion",
            f"sample max_length of at least {question + MIN_ROOM} for the evidence agent",
        )
    return max(1, room // 3)


def encode_windows(
    tokenizer: Any, examples: Sequence[SpanExample], max_length: int, padding: str = "longest"
) -> Tensors:
    """Stride windows of every example: model inputs, start/end positions (0 = CLS: no answer in the
    window), ``example_index`` (the window's example), ``offset_mapping`` (post characters or NOT_CONTEXT)."""
    if not examples:
        raise DataError("no examples to encode", "check that the split is not empty")
    enc = tokenizer(
        [ex.text_a for ex in examples],
        [ex.text_b for ex in examples],
        truncation="only_second",
        max_length=max_length,
        stride=window_stride(tokenizer, examples, max_length),
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=padding,
    )
    starts, ends, offsets = [], [], []
    for w, index in enumerate(enc["overflow_to_sample_mapping"]):
        seq = enc.sequence_ids(w)
        off = [
            (a, b) if seq[i] == 1 else (NOT_CONTEXT, NOT_CONTEXT)
            for i, (a, b) in enumerate(enc["offset_mapping"][w])
        ]
        context = [i for i, s in enumerate(seq) if s == 1]
        start = end = 0
        lo, hi = (off[context[0]][0], off[context[-1]][1]) if context else (0, -1)
        inside = [(s, e) for s, e in examples[index].answers if lo <= s and e <= hi]
        if inside:  # the first gold span wholly in the window: its first and last tokens
            s, e = inside[0]
            start = next(i for i in context if off[i][1] > s)
            end = max(i for i in context if off[i][0] < e)
        starts.append(start)
        ends.append(end)
        offsets.append(off)
    out = {
        k: torch.tensor(enc[k], dtype=torch.long)
        for k in ("input_ids", "attention_mask", "token_type_ids")
        if k in enc
    }
    out["start_positions"] = torch.tensor(starts, dtype=torch.long)
    out["end_positions"] = torch.tensor(ends, dtype=torch.long)
    out["example_index"] = torch.tensor(enc["overflow_to_sample_mapping"], dtype=torch.long)
    out["offset_mapping"] = torch.tensor(offsets, dtype=torch.long)
    return out


class EvidenceScorer:
    """SQuAD-v2 metrics of one split from its windows' (start, end) logits, in window order."""

    def __init__(self, examples: Sequence[SpanExample], encoded: Tensors) -> None:
        self.golds = [ex.answer_texts() for ex in examples]
        self.posts = [ex.text_b for ex in examples]
        self.example_index = encoded["example_index"].tolist()
        self.offsets = encoded["offset_mapping"]

    def _windows(self, predictions: list[Any]) -> list[list[Any]]:
        """Each example's (start_logits, end_logits, offsets) windows."""
        if len(predictions) != len(self.example_index):
            raise ValueError(f"{len(self.example_index)} windows but {len(predictions)} predictions")
        windows: list[list[Any]] = [[] for _ in self.golds]
        for w, (index, (start, end)) in enumerate(zip(self.example_index, predictions, strict=True)):
            windows[index].append((start, end, self.offsets[w]))
        return windows

    def answers(self, predictions: list[Any]) -> list[str | None]:
        """Each example's predicted answer text (None = no evidence)."""
        spans = [best_span(ws) if ws else None for ws in self._windows(predictions)]
        return [
            None if sp is None else post[sp[0] : sp[1]] for sp, post in zip(spans, self.posts, strict=True)
        ]

    def margins(self, predictions: list[Any]) -> list[tuple[float, str | None]]:
        """Each example's (best span score - null score, best span text): the answer is given when the
        margin is >= 0; a null threshold moves that line (``scripts/evidence_probe.py`` reads it)."""
        out: list[tuple[float, str | None]] = []
        for ws, post in zip(self._windows(predictions), self.posts, strict=True):
            null, best, span = scored_span(ws) if ws else (0.0, -float("inf"), None)
            out.append((best - null, None if span is None else post[span[0] : span[1]]))
        return out

    def __call__(self, gold: list[Any], predictions: list[Any]) -> float:
        return self.metrics(gold, predictions)["span_f1"]

    def metrics(self, gold: list[Any], predictions: list[Any]) -> dict[str, float]:
        return span_metrics(self.answers(predictions), self.golds)


class EvidenceAgent:
    """Extractive QA of (DSM-5 criterion description, post) -> evidence sentence span or none; span F1."""

    name = "evidence"
    num_labels = 2  # the QA head's two outputs per token: start and end logits
    metric_name = "span_f1"
    baseline_name = "no-answer baseline"
    head = SPAN

    def load_splits(self, data_dir: Path, seed: int) -> Splits:
        """Read and validate the data; post-grouped seeded splits of the (post, symptom) examples."""
        rows, posts = read_redsm5(data_dir)
        splits = grouped_split(span_examples(rows, posts), seed)
        if not any(ex.label for ex in splits.train):  # only no-answer examples: no span to learn
            raise DataError(
                f"the train split has no example with evidence found in its post ({len(splits.train)} "
                "unanswerable example(s)): nothing can be learned from it",
                f"use more data, or another --seed than {seed}: the posts are split at random by seed",
            )
        return splits

    def check_space(self, space: SpaceConfig, tokenizers: dict[str, Any]) -> None:
        """Refuse class weighting, and max_length choices leaving no room for the post beside a question."""
        for name, tokenizer in tokenizers.items():
            need = question_tokens(tokenizer, list(DSM5_DESCRIPTIONS.values())) + MIN_ROOM
            short = sorted(n for n in space.max_length if n < need)
            if short:
                raise ConfigError(
                    f"max_length {short[0]} leaves no room for the post beside the longest criterion "
                    f"({name})",
                    f"sample max_length of at least {need} for the evidence agent",
                )
        if True in space.class_weighting:
            raise ConfigError(
                "the evidence agent cannot weight classes (its targets are token positions)",
                "set space.class_weighting: [false]",
            )

    def encode(
        self,
        tokenizer: Any,
        examples: Sequence[PairExample],
        max_length: int,
        padding: str = "longest",
        cache_dir: Path | None = None,
    ) -> tuple[Tensors, bool]:
        """Stride windows; with ``cache_dir``: from/to ``<cache_dir>/tokenized/<key>.windows.pt``
        (``hpo.train.tokenized.cached_file``: under a file lock, atomic, rebuilt once when unreadable)."""
        spans = _spans(examples)
        if cache_dir is None:
            return encode_windows(tokenizer, spans, max_length, padding), True
        h = hashlib.sha256(f"{cache_key(tokenizer, spans, max_length)}|{padding}".encode())
        h.update(repr([ex.answers for ex in spans]).encode())
        path = Path(cache_dir) / "tokenized" / f"{h.hexdigest()[:24]}.windows.pt"
        encoded: Tensors
        encoded, built = cached_file(path, lambda: encode_windows(tokenizer, spans, max_length, padding))
        return encoded, built

    def scorer(self, examples: Sequence[PairExample], encoded: Tensors) -> EvidenceScorer:
        return EvidenceScorer(_spans(examples), encoded)

    def majority_baseline(self, splits: Splits, split: str = "val") -> float:
        """span_f1 on ``split`` of always predicting no evidence."""
        golds = [ex.answer_texts() for ex in _spans(splits.get(split))]
        return span_metrics([None] * len(golds), golds)["span_f1"]


def _spans(examples: Sequence[PairExample]) -> list[SpanExample]:
    if not all(isinstance(ex, SpanExample) for ex in examples):
        raise DataError(
            "the evidence agent got examples without answer spans", "load them with its load_splits"
        )
    return [ex for ex in examples if isinstance(ex, SpanExample)]


AGENT = EvidenceAgent()
