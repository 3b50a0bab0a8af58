"""hpo.bench.evidence: the AUC and null-threshold helpers, hand-computed."""

from __future__ import annotations

import pytest

from hpo.bench.evidence import auc, best_threshold, f1_at

# two answerable pairs (gold "a b", "c") and two unanswerable; (margin, best span text)
GOLDS = [["a b"], ["c"], [], []]
MARGINS = [(3.0, "a b"), (-1.0, "c d"), (1.0, "x"), (-2.0, "y")]


def test_auc_counts_ties_half() -> None:
    assert auc([3.0, -1.0], [1.0, -2.0]) == pytest.approx(3 / 4)
    assert auc([1.0], [1.0]) == 0.5 and auc([], [1.0]) == 0.5
    assert auc([2.0, 2.0], [1.0]) == 1.0


def test_f1_at_answers_only_at_or_above_the_threshold() -> None:
    # threshold 0: answers pair 0 (F1 1) and pair 2 (unanswerable: 0); no answer on 1 (0) and 3 (1)
    assert f1_at(MARGINS, GOLDS, 0.0) == pytest.approx((1 + 0 + 0 + 1) / 4)
    # threshold -1: pair 1 answered "c d" against "c" (F1 2/3)
    assert f1_at(MARGINS, GOLDS, -1.0) == pytest.approx((1 + 2 / 3 + 0 + 1) / 4)
    assert f1_at(MARGINS, GOLDS, float("inf")) == pytest.approx(2 / 4)  # the no-answer baseline


def test_best_threshold_picks_the_best_margin_cut() -> None:
    # thresholds 3: (1+0+1+1)/4 = 0.75 is the best; inf gives 0.5, 1.0 gives 0.5, -1 gives 0.667
    assert best_threshold(MARGINS, GOLDS) == (pytest.approx(0.75), 3.0)
