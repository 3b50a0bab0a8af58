"""The criteria agent: examples from the sample, macro-F1, majority baseline."""

from __future__ import annotations

import pytest

from hpo.agents import get_agent
from hpo.agents.criteria import DSM5_DESCRIPTIONS, CriteriaAgent, macro_f1
from hpo.paths import SAMPLE_DATA_DIR
from hpo.train.data import DSM5_SYMPTOMS, PairExample, Splits


def test_registry_returns_the_agent() -> None:
    agent = get_agent("criteria")
    assert isinstance(agent, CriteriaAgent)
    assert (agent.name, agent.num_labels, agent.metric_name) == ("criteria", 2, "macro_f1")


def test_every_symptom_has_a_description() -> None:
    assert set(DSM5_DESCRIPTIONS) == set(DSM5_SYMPTOMS)
    assert all(len(text.split()) >= 8 for text in DSM5_DESCRIPTIONS.values())


def test_load_splits_pairs_description_with_sentence() -> None:
    splits = CriteriaAgent().load_splits(SAMPLE_DATA_DIR, seed=0)
    assert all(splits.sizes().values())
    for ex in splits.train[:50]:
        assert ex.text_a == DSM5_DESCRIPTIONS[ex.symptom] and ex.label in (0, 1) and ex.text_b
    assert {ex.label for ex in splits.val} == {0, 1}


def test_macro_f1_hand_computed() -> None:
    # class 1: tp=2 fp=1 fn=1 -> F1 2/3; class 0: tp=1 fp=1 fn=1 -> F1 1/2
    assert macro_f1([1, 1, 1, 0, 0], [1, 1, 0, 1, 0]) == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert macro_f1([0, 1, 0, 1], [0, 1, 0, 1]) == 1.0
    assert macro_f1([0, 1, 1, 1], [1, 1, 1, 1]) == pytest.approx((0.0 + 6 / 7) / 2)  # class 0 never predicted
    assert macro_f1([1, 1], [1, 1]) == pytest.approx(0.5)  # class 0 absent: precision + recall = 0
    assert macro_f1([], []) == 0.0
    with pytest.raises(ValueError):
        macro_f1([1], [1, 0])


def test_score_is_macro_f1() -> None:
    assert CriteriaAgent().score([1, 0, 1], [1, 1, 1]) == pytest.approx(macro_f1([1, 0, 1], [1, 1, 1]))


def test_majority_baseline_uses_train_majority() -> None:
    ex = [PairExample("a", "b", label, f"p{i}", "s", "FATIGUE") for i, label in enumerate([1, 1, 0, 0, 1])]
    splits = Splits(train=ex[:3], val=ex[3:], test=ex[3:])
    # train majority is 1; val labels [0, 1] -> predictions [1, 1]: F1(1) = 2/3, F1(0) = 0
    assert CriteriaAgent().majority_baseline(splits) == pytest.approx(1 / 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_majority_baseline_is_weak_on_the_sample(seed: int) -> None:
    agent = CriteriaAgent()
    splits = agent.load_splits(SAMPLE_DATA_DIR, seed)
    assert agent.majority_baseline(splits, "val") < 0.6
    assert agent.majority_baseline(splits, "test") < 0.6
