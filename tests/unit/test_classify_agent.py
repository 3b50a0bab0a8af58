"""The classify agent's metrics, baselines, multi-label head, encoding and settings, on known values."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from hpo.agents import get_agent
from hpo.agents.classify import CLASSIFY_SAMPLE, ClassifyAgent
from hpo.agents.classify_metrics import (
    MULTI_LABEL,
    MultiLabelScorer,
    SingleLabelScorer,
    accuracy,
    macro_f1,
    multilabel_macro_f1,
    multilabel_micro_f1,
)
from hpo.config.catalog import get_spec
from hpo.config.columns import ColumnsConfig
from hpo.config.fingerprint import SETTINGS
from hpo.config.study import SpaceConfig, load_config
from hpo.errors import ConfigError
from hpo.paths import CONFIG_DIR
from hpo.train.data import PairExample, Splits
from hpo.train.losses import make_loss
from hpo.train.model import load_tokenizer

TINY = CONFIG_DIR / "studies" / "classify-tiny.yaml"


def ex(label: int, text: str = "some words") -> PairExample:
    return PairExample(text, text, label, "g", "line 2", "")


def test_single_label_metrics_on_known_values() -> None:
    gold, pred = [0, 0, 1, 1, 2], [0, 1, 1, 1, 0]
    # class 0: F1 2/4, class 1: 4/5, class 2: 0
    assert macro_f1(gold, pred) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert accuracy(gold, pred) == pytest.approx(0.6)
    assert SingleLabelScorer().metrics(gold, pred) == pytest.approx({"macro_f1": 1.3 / 3, "accuracy": 0.6})
    assert macro_f1([3, 3], [3, 3]) == 1.0  # classes absent from gold and predictions are not averaged


def test_multi_label_metrics_on_known_values() -> None:
    gold = [[1, 0, 1, 0], [0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]]
    pred = [[1, 0, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    # label 0: tp 2 -> F1 1; label 1: tp 1, fn 1 -> 2/3; label 2: fp 1, fn 1 -> 0; label 3: never -> left out
    assert multilabel_macro_f1(gold, pred) == pytest.approx((1 + 2 / 3 + 0) / 3)
    # pooled: tp 3, fp 1, fn 2 -> 6 / 9
    assert multilabel_micro_f1(gold, pred) == pytest.approx(6 / 9)
    as_floats = [[float(v) for v in row] for row in gold]  # what the loop's targets read back as
    assert MultiLabelScorer().metrics(as_floats, pred) == pytest.approx(
        {"macro_f1": 5 / 9, "micro_f1": 2 / 3}
    )


def test_majority_class_baseline_on_known_data() -> None:
    agent = ClassifyAgent()
    splits = Splits(train=[ex(0), ex(0), ex(1)], val=[ex(0), ex(1), ex(1)], test=[ex(1)])
    # always class 0 on val: class 0 tp 1, fp 2 -> F1 2/4; class 1 F1 0
    assert agent.majority_baseline(splits, "val") == pytest.approx(0.25)
    assert agent.majority_baseline(splits, "test") == pytest.approx(0.0)


def test_per_label_prior_baseline_on_known_data() -> None:
    agent = ClassifyAgent()
    agent.multi_label, agent.num_labels = True, 2
    # train priors: label 0 in 3/4 rows (predicted), label 1 in 2/4 (not > 0.5: never predicted)
    splits = Splits(train=[ex(1), ex(1), ex(3), ex(2)], val=[ex(1), ex(2), ex(0)], test=[ex(1)])
    # label 0: tp 1, fp 2 -> 2/4; label 1: fn 1 -> 0
    assert agent.majority_baseline(splits, "val") == pytest.approx(0.25)
    assert agent.majority_baseline(splits, "test") == pytest.approx(1.0)


def test_baseline_of_the_shipped_sample_is_its_majority_class() -> None:
    agent = ClassifyAgent(ColumnsConfig(group="customer"))
    splits = agent.load_splits(CLASSIFY_SAMPLE, 3)
    val = [e.label for e in splits.val]
    majority = max(set(e.label for e in splits.train), key=lambda c: [e.label for e in splits.train].count(c))
    assert agent.majority_baseline(splits) == pytest.approx(macro_f1(val, [majority] * len(val)))


@pytest.mark.parametrize("kind", ["ce", "label_smoothing", "focal"])
def test_multi_label_head_loss_is_bce_with_logits(kind: str) -> None:
    torch.manual_seed(0)
    logits, y = torch.randn(5, 3), torch.randint(0, 2, (5, 3)).float()
    loss_fn = make_loss(kind, label_smoothing=0.2, focal_gamma=0.0, weight=None)
    num, weight = MULTI_LABEL.terms(loss_fn, SimpleNamespace(logits=logits), {"labels": y}, torch.ones(5, 4))
    target = y * 0.8 + 0.1 if kind == "label_smoothing" else y
    expected = torch.nn.BCEWithLogitsLoss()(logits, target)  # focal with gamma 0 is plain BCE
    assert float(num.sum() / weight.sum()) == pytest.approx(float(expected), rel=1e-6)
    assert float(weight.sum()) == float(loss_fn.terms_weight(y))  # the accumulation window's denominator
    assert MULTI_LABEL.predictions(SimpleNamespace(logits=torch.tensor([[0.3, -0.2]]))) == [[1, 0]]


def test_focal_down_weights_easy_labels() -> None:
    logits, y = torch.tensor([[4.0, -4.0]]), torch.tensor([[1.0, 0.0]])
    plain = make_loss("ce", label_smoothing=0.0, focal_gamma=2.0, weight=None)
    focal = make_loss("focal", label_smoothing=0.0, focal_gamma=2.0, weight=None)
    out = SimpleNamespace(logits=logits)
    ce_num, _ = MULTI_LABEL.terms(plain, out, {"labels": y}, torch.ones(1, 2))
    focal_num, _ = MULTI_LABEL.terms(focal, out, {"labels": y}, torch.ones(1, 2))
    assert float(focal_num) < float(ce_num) / 100


def test_encode_single_text_pairs_and_multi_label_targets(tmp_path: Path) -> None:
    tok = load_tokenizer(get_spec("hpo-tiny-bert"))
    examples = [
        PairExample("a b c", "d e", 1, "g", "line 2", ""),
        PairExample("a", "d", 2, "g", "line 3", ""),
    ]
    single = ClassifyAgent()
    tensors, fresh = single.encode(tok, examples, 16, "longest", tmp_path)
    assert fresh and tensors["labels"].tolist() == [1, 2] and tensors["labels"].dtype == torch.long
    assert int(tensors["attention_mask"][0].sum()) == 5  # [CLS] a b c [SEP]: text_a alone
    again, fresh = single.encode(tok, examples, 16, "longest", tmp_path)
    assert not fresh and torch.equal(again["input_ids"], tensors["input_ids"])
    assert len(list((tmp_path / "tokenized").glob("*.classify.pt"))) == 1
    pair = ClassifyAgent(ColumnsConfig(text_pair="other"))
    paired, _ = pair.encode(tok, examples, 16, "max_length", None)
    assert int(paired["attention_mask"][0].sum()) == 8 and paired["input_ids"].shape[1] == 16
    multi = ClassifyAgent()
    multi.multi_label, multi.num_labels = True, 3
    targets, _ = multi.encode(tok, examples, 16, "longest", None)
    assert targets["labels"].tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]


def test_multi_label_data_refuses_class_weights() -> None:
    agent = ClassifyAgent()
    agent.check_space(SpaceConfig(class_weighting=[False, True]), {})  # single-label: fine
    agent.multi_label = True
    with pytest.raises(ConfigError, match=r"class_weighting: \[false\]"):
        agent.check_space(SpaceConfig(class_weighting=[False, True]), {})


def test_columns_come_from_the_yaml_and_flags_and_reach_the_agent() -> None:
    cfg = load_config(TINY, {"agent": "classify", "columns": {"label": "tags"}})
    assert cfg.columns == ColumnsConfig(text="text", label="tags", group="customer")
    agent = get_agent("classify", cfg)
    assert isinstance(agent, ClassifyAgent) and agent.columns == cfg.columns
    assert SETTINGS["columns"].fingerprinted
    with pytest.raises(ConfigError, match="named for two roles"):
        load_config(TINY, {"columns": {"group": "text"}})
