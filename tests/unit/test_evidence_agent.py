"""The evidence agent: sample examples, stride windows, the span choice over windows, SQuAD-v2 metrics."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch

from hpo.agents import agent_names, get_agent
from hpo.agents.evidence import EvidenceAgent, EvidenceScorer, SpanExample, encode_windows, locate
from hpo.agents.spans import best_span, normalize, span_metrics, token_f1
from hpo.config.catalog import get_spec
from hpo.config.study import SpaceConfig
from hpo.errors import ConfigError
from hpo.paths import SAMPLE_DATA_DIR
from hpo.train.heads import SPAN
from hpo.train.losses import make_loss
from hpo.train.model import load_tokenizer

GOLD = "I am always exhausted and drained"
POST = (
    "We moved to a new flat in the spring and the street is loud at night. My sister visits on Sundays "
    "with her two kids and we cook together. " + GOLD + ". The bus to work is late most mornings and the "
    "office is cold. I still like the music I listened to in school."
)


def tiny_tokenizer() -> Any:
    return load_tokenizer(get_spec("hpo-tiny-bert"))


def examples() -> list[SpanExample]:
    start = POST.index(GOLD)
    common = {"text_a": "Is the person tired?", "text_b": POST, "sentence_id": "s", "symptom": "FATIGUE"}
    return [
        SpanExample(**common, label=1, post_id="p1", answers=((start, start + len(GOLD)),)),
        SpanExample(**common, label=0, post_id="p2"),
    ]


def test_registry_finds_both_agents_by_name() -> None:
    assert agent_names() == ("classify", "criteria", "evidence")
    agent = get_agent("evidence")
    assert isinstance(agent, EvidenceAgent) and agent.metric_name == "span_f1"
    assert agent.head.auto_class == "AutoModelForQuestionAnswering"
    with pytest.raises(ConfigError, match="unknown agent 'nope'"):
        get_agent("nope")


def test_every_sample_sentence_is_in_its_post_and_every_evidence_is_an_answer() -> None:
    with (SAMPLE_DATA_DIR / "redsm5_posts.csv").open(encoding="utf-8") as handle:
        posts = {row["post_id"]: row["text"] for row in csv.DictReader(handle)}
    with (SAMPLE_DATA_DIR / "redsm5_annotations.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert all(row["sentence_text"] in posts[row["post_id"]] for row in rows)
    splits = EvidenceAgent().load_splits(SAMPLE_DATA_DIR, seed=0)
    all_ex = [ex for split in (splits.train, splits.val, splits.test) for ex in split]
    assert sum(len(ex.answers) for ex in all_ex) == sum(row["status"] == "1" for row in rows)  # type: ignore[attr-defined]
    pairs = {(row["post_id"], row["DSM5_symptom"]) for row in rows}
    assert len(all_ex) == len(pairs)  # one example per annotated (post, symptom) pair
    assert {ex.label for ex in splits.val} == {0, 1}


def test_locate_falls_back_to_case_and_whitespace() -> None:
    assert locate("I slept. I AM  tired now.", "I am tired now.") == (9, 25)
    assert locate("abc", "xyz") is None


def test_metrics_hand_computed() -> None:
    assert normalize("The Cat, sat!  a mat") == "cat sat mat"
    # pred [always, exhausted] vs gold [i, am, always, exhausted, and, drained]: P=1, R=1/3 -> F1 0.5
    assert token_f1("always exhausted", GOLD) == pytest.approx(0.5)
    preds = ["always exhausted", None, None, "pizza", "I am sad"]
    golds: list[tuple[str, ...]] = [(GOLD,), ("I am sad.",), (), (), ("Nothing matters.", "I am sad!")]
    got = span_metrics(preds, golds)
    # F1 per example: 0.5, 0 (missed), 1 (right no-answer), 0 (answer where none), 1 (best of two golds)
    assert got["span_f1"] == pytest.approx(2.5 / 5)
    assert got["exact_match"] == pytest.approx(2 / 5)
    assert got["no_answer_accuracy"] == pytest.approx(3 / 5)
    assert got["has_answer_f1"] == pytest.approx(1.5 / 3)


def test_windows_place_the_answer_only_where_it_fits() -> None:
    tok = tiny_tokenizer()
    enc = encode_windows(tok, examples(), max_length=24)
    index = enc["example_index"].tolist()
    assert index.count(0) >= 4 and index.count(1) == index.count(0)  # the post needs several windows
    holding = []
    for w, ex in enumerate(index):
        s, e = int(enc["start_positions"][w]), int(enc["end_positions"][w])
        if ex == 1 or s == 0:
            assert (s, e) == (0, 0)
            continue
        off = enc["offset_mapping"][w]
        assert POST[int(off[s, 0]) : int(off[e, 1])] == GOLD
        holding.append(w)
    assert holding and holding[0] > 0  # not in the first window


def peaked(width: int, start: int, end: int, score: float, null: float) -> tuple[torch.Tensor, torch.Tensor]:
    s, e = torch.full((width,), -5.0), torch.full((width,), -5.0)
    s[0], e[0] = null / 2, null / 2
    s[start], e[end] = score / 2, score / 2
    return s, e


def test_best_span_over_windows_and_null_rule() -> None:
    tok = tiny_tokenizer()
    exs = examples()
    enc = encode_windows(tok, exs, max_length=24)
    width = enc["input_ids"].shape[1]
    index = enc["example_index"].tolist()
    gold_w = next(w for w, i in enumerate(index) if i == 0 and int(enc["start_positions"][w]) > 0)
    other_w = next(w for w, i in enumerate(index) if i == 0 and w != gold_w)
    first_ctx = int((enc["offset_mapping"][other_w][:, 0] >= 0).nonzero()[0])
    preds = []
    for w, i in enumerate(index):
        gs, ge = int(enc["start_positions"][w]), int(enc["end_positions"][w])
        if w == gold_w:
            preds.append(peaked(width, gs, ge, score=16.0, null=2.0))  # the best span of the example
        elif w == other_w:
            preds.append(peaked(width, first_ctx, first_ctx + 1, score=10.0, null=2.0))  # a worse one
        elif i == 0:
            preds.append(peaked(width, 1, 1, score=-20.0, null=2.0))
        else:  # unanswerable: a span scoring 6 under a null score of 8 in every window
            preds.append(peaked(width, first_ctx, first_ctx, score=6.0, null=8.0))
    scorer = EvidenceScorer(exs, enc)
    assert scorer.answers(preds) == [GOLD, None]
    # margins: best span score minus the lowest null score (16 - 2 = 14; 6 - 8 = -2), with the span's text
    (gold_margin, gold_text), (neg_margin, neg_text) = scorer.margins(preds)
    assert gold_margin == pytest.approx(14.0) and gold_text == GOLD
    assert neg_margin == pytest.approx(-2.0) and neg_text is not None and neg_text in exs[1].text_b
    assert scorer.metrics([], preds) == {
        "span_f1": 1.0,
        "exact_match": 1.0,
        "no_answer_accuracy": 1.0,
        "has_answer_f1": 1.0,
    }
    # the null score is the lowest over an example's windows: one window with a low CLS lets the span win
    last_neg = max(w for w, i in enumerate(index) if i == 1)
    preds[last_neg] = peaked(width, first_ctx, first_ctx, score=6.0, null=-30.0)
    assert scorer.answers(preds)[1] is not None
    assert scorer.margins(preds)[1][0] == pytest.approx(6.0 + 30.0)
    assert scorer.metrics([], preds)["span_f1"] == pytest.approx(0.5)
    # a span longer than the cap is never chosen
    s, e = preds[gold_w]
    off = enc["offset_mapping"][gold_w]
    assert best_span([(s, e, off)], max_tokens=1) != best_span([(s, e, off)])


def test_span_loss_ignores_padding() -> None:
    class Out:
        def __init__(self, s: torch.Tensor, e: torch.Tensor) -> None:
            self.start_logits, self.end_logits = s, e

    torch.manual_seed(0)
    s, e = torch.randn(2, 5), torch.randn(2, 5)
    targets = {"start_positions": torch.tensor([1, 0]), "end_positions": torch.tensor([2, 0])}
    loss = make_loss("ce", label_smoothing=0.0, focal_gamma=0.0, weight=None)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 0, 0]])
    padded, w = SPAN.terms(loss, Out(s, e), targets, mask)
    cut, _ = SPAN.terms(loss, Out(s[:, :3], e[:, :3]), targets, mask[:, :3])
    assert torch.allclose(padded, cut) and w.tolist() == [1.0, 1.0]


def test_windows_are_cached_on_disk(tmp_path: Path) -> None:
    agent, tok = EvidenceAgent(), tiny_tokenizer()
    first, fresh = agent.encode(tok, examples(), 24, "longest", tmp_path)
    again, fresh_again = agent.encode(tok, examples(), 24, "longest", tmp_path)
    assert fresh and not fresh_again and first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    other, fresh_other = agent.encode(tok, examples(), 24, "max_length", tmp_path)
    assert fresh_other and other["input_ids"].shape[1] == 24


def test_bad_settings_are_one_line_config_errors() -> None:
    with pytest.raises(ConfigError, match="class"):
        EvidenceAgent().check_space(SpaceConfig(class_weighting=[False, True]), {})
    tokenizers = {"hpo-tiny-bert": tiny_tokenizer()}
    with pytest.raises(ConfigError, match="max_length 32 leaves no room"):
        EvidenceAgent().check_space(SpaceConfig(max_length=[32, 128], class_weighting=[False]), tokenizers)
    EvidenceAgent().check_space(SpaceConfig(max_length=[64, 128], class_weighting=[False]), tokenizers)
    with pytest.raises(ConfigError, match="max_length 8 leaves"):
        encode_windows(tiny_tokenizer(), examples(), max_length=8)

    class Slow:
        is_fast = False

    with pytest.raises(ConfigError, match="fast tokenizer"):
        encode_windows(Slow(), examples(), max_length=64)
