"""The shipped synthetic sample, ReDSM5 validation errors, grouped splits, pair encoding, the generator."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from hpo.data.synth.write import write_sample
from hpo.errors import ConfigError, DataError
from hpo.paths import ASSETS_DIR, SAMPLE_DATA_DIR
from hpo.train.data import (
    ANNOTATION_COLUMNS,
    DSM5_SYMPTOMS,
    PairExample,
    encode_pairs,
    grouped_split,
    read_redsm5,
)
from tests.support import REPO

TINY_DIR = ASSETS_DIR / "tiny-bert"


def _examples(n_posts: int, per_post: int = 2) -> list[PairExample]:
    return [
        PairExample("criterion", f"sentence {p}-{s}", (p + s) % 2, f"p{p}", f"p{p}_{s}", "FATIGUE")
        for p in range(n_posts)
        for s in range(per_post)
    ]


def _write(
    tmp_path: Path,
    annotations: list[list[str]] | None = None,
    posts: list[list[str]] | None = None,
    ann_header: list[str] | None = None,
) -> Path:
    rows = [["p1", "p1_0", "I am so tired.", "FATIGUE", "1", "tired"]] if annotations is None else annotations
    with (tmp_path / "redsm5_annotations.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([ann_header or list(ANNOTATION_COLUMNS), *rows])
    with (tmp_path / "redsm5_posts.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["post_id", "text"], *(posts or [["p1", "I am so tired."]])])
    return tmp_path


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TINY_DIR))


# --- the shipped sample ---


def test_sample_meets_size_label_and_status_requirements() -> None:
    rows, posts = read_redsm5(SAMPLE_DATA_DIR)
    assert 450 <= len(rows) <= 600
    assert 140 <= len(posts) <= 160
    assert set(Counter(row["DSM5_symptom"] for row in rows)) == set(DSM5_SYMPTOMS)
    positives = sum(row["status"] == "1" for row in rows) / len(rows)
    assert 0.25 <= positives <= 0.35  # evidence is the minority, as in real criteria data (test_sample_shape)
    for symptom in DSM5_SYMPTOMS:
        assert {row["status"] for row in rows if row["DSM5_symptom"] == symptom} == {"0", "1"}
    assert all(row["sentence_text"] in posts[row["post_id"]] for row in rows)


def test_sample_is_marked_synthetic() -> None:
    readme = (SAMPLE_DATA_DIR / "README.md").read_text().lower()
    assert "synthetic" in readme and "not real data" in readme and "make_sample_data.py" in readme


def test_shipped_files_match_the_generator(tmp_path: Path) -> None:
    write_sample(tmp_path, tmp_path / "vocab.txt", seed=0)
    for name in ("redsm5_annotations.csv", "redsm5_posts.csv"):
        assert (tmp_path / name).read_bytes() == (SAMPLE_DATA_DIR / name).read_bytes(), name
    assert (tmp_path / "vocab.txt").read_bytes() == (TINY_DIR / "vocab.txt").read_bytes()


def test_generator_is_deterministic(tmp_path: Path) -> None:
    for run in ("a", "b"):
        write_sample(tmp_path / run, tmp_path / run / "vocab.txt", seed=3)
    for name in ("redsm5_annotations.csv", "redsm5_posts.csv", "vocab.txt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    write_sample(tmp_path / "c", None, seed=4)
    assert (tmp_path / "c" / "redsm5_posts.csv").read_bytes() != (
        tmp_path / "a" / "redsm5_posts.csv"
    ).read_bytes()


def test_a_larger_sample_starts_with_the_shipped_one(tmp_path: Path) -> None:
    """--n-posts 300 generates the shipped 150 posts first, then 150 more of the same kind."""
    stats = write_sample(tmp_path, None, seed=0, n_posts=300)
    rows, posts = read_redsm5(tmp_path)
    small_rows, small_posts = read_redsm5(SAMPLE_DATA_DIR)
    assert stats["posts"] == len(posts) == 300
    assert {k: posts[k] for k in small_posts} == small_posts
    assert [r for r in rows if r["post_id"] in small_posts] == small_rows
    assert 0.25 <= stats["positives"] / stats["rows"] <= 0.35


# --- validation errors ---


def test_valid_minimal_files_load(tmp_path: Path) -> None:
    rows, posts = read_redsm5(_write(tmp_path, [["p1", "p1_0", "I am so tired.", "FATIGUE", "1.0", ""]]))
    assert rows[0]["status"] == "1" and posts == {"p1": "I am so tired."}


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as info:
        read_redsm5(tmp_path / "nope")
    assert info.value.fix and "--data-dir" in info.value.fix


def test_missing_file_is_named(tmp_path: Path) -> None:
    _write(tmp_path)
    (tmp_path / "redsm5_posts.csv").unlink()
    with pytest.raises(DataError, match=r"redsm5_posts\.csv is missing"):
        read_redsm5(tmp_path)


def test_missing_columns_are_named(tmp_path: Path) -> None:
    header = ["post_id", "sentence_id", "sentence_text", "symptom", "explanation"]
    _write(tmp_path, [["p1", "p1_0", "x", "FATIGUE", ""]], ann_header=header)
    with pytest.raises(DataError, match="DSM5_symptom, status"):
        read_redsm5(tmp_path)


def test_unknown_labels_are_named_with_the_valid_ones(tmp_path: Path) -> None:
    _write(tmp_path, [["p1", "p1_0", "x", "TIREDNESS", "1", ""], ["p1", "p1_1", "y", "FATIGUE", "0", ""]])
    with pytest.raises(DataError, match="TIREDNESS") as info:
        read_redsm5(tmp_path)
    assert "FATIGUE" not in info.value.message
    assert info.value.fix and "SUICIDAL_THOUGHTS" in info.value.fix


def test_status_must_be_0_or_1(tmp_path: Path) -> None:
    _write(tmp_path, [["p1", "p1_0", "x", "FATIGUE", "yes", ""]])
    with pytest.raises(DataError, match="status 'yes' is not 0 or 1"):
        read_redsm5(tmp_path)


@pytest.mark.parametrize(
    "content", ["", "post_id,sentence_id,sentence_text,DSM5_symptom,status,explanation\n"]
)
def test_empty_file(tmp_path: Path, content: str) -> None:
    _write(tmp_path)
    (tmp_path / "redsm5_annotations.csv").write_text(content)
    with pytest.raises(DataError, match=r"redsm5_annotations\.csv (is empty|has a header but no rows)"):
        read_redsm5(tmp_path)


def test_annotation_for_unknown_post(tmp_path: Path) -> None:
    _write(tmp_path, [["p9", "p9_0", "x", "FATIGUE", "1", ""]])
    with pytest.raises(DataError, match=r"not in redsm5_posts\.csv: p9"):
        read_redsm5(tmp_path)


# --- grouped splits ---


@pytest.mark.parametrize("seed", [0, 1, 7, 123])
def test_no_post_in_two_splits(seed: int) -> None:
    splits = grouped_split(_examples(40), seed)
    groups = [{ex.post_id for ex in part} for part in (splits.train, splits.val, splits.test)]
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
    assert sum(splits.sizes().values()) == 80 and all(splits.sizes().values())
    assert len(groups[0]) == 28 and len(groups[1]) == 6 and len(groups[2]) == 6


def test_split_is_seeded() -> None:
    examples = _examples(40)
    assert grouped_split(examples, 5) == grouped_split(examples, 5)
    assert grouped_split(examples, 5).val != grouped_split(examples, 6).val


def test_three_posts_is_the_minimum() -> None:
    assert all(grouped_split(_examples(3), 0).sizes().values())
    with pytest.raises(DataError, match=r"too few posts.*need at least 3"):
        grouped_split(_examples(2), 0)


def test_bad_fractions() -> None:
    with pytest.raises(ConfigError):
        grouped_split(_examples(10), 0, fractions=(0.8, 0.2, 0.0))


# --- tokenization ---


def test_encode_pairs_shapes_and_truncation(tokenizer) -> None:  # type: ignore[no-untyped-def]
    long = PairExample("criterion " * 50, "sentence " * 50, 1, "p", "s", "FATIGUE")
    short = PairExample("sad mood", "I feel sad.", 0, "p", "s", "DEPRESSED_MOOD")
    batch = encode_pairs(tokenizer, [long, short], max_length=32)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert (
        batch["input_ids"].shape == batch["attention_mask"].shape == batch["token_type_ids"].shape == (2, 32)
    )
    assert batch["attention_mask"][0].sum() == 32 and batch["attention_mask"][1].sum() < 32
    assert batch["labels"].tolist() == [1, 0] and str(batch["labels"].dtype) == "torch.int64"
    assert int(batch["token_type_ids"][0].max()) == 1  # both segments survive truncation


def test_tiny_tokenizer_ids_fit_the_model(tokenizer) -> None:  # type: ignore[no-untyped-def]
    import json

    from hpo.agents.criteria import DSM5_DESCRIPTIONS

    vocab_size = json.loads((TINY_DIR / "config.json").read_text())["vocab_size"]
    lines = (TINY_DIR / "vocab.txt").read_text().splitlines()
    assert len(lines) <= vocab_size and lines[0] == "[PAD]" and tokenizer.pad_token_id == 0
    _rows, posts = read_redsm5(SAMPLE_DATA_DIR)
    texts = list(posts.values()) + list(DSM5_DESCRIPTIONS.values())
    ids = [i for enc in tokenizer(texts)["input_ids"] for i in enc]
    assert max(ids) < vocab_size
    assert tokenizer.unk_token_id not in ids  # every sample word is in the vocab


def test_the_tiny_decoder_shares_the_tiny_bert_vocab() -> None:
    """hpo-tiny-llama tokenizes with tiny-bert's vocabulary; make_sample_data.py rewrites both."""
    assets = REPO / "hpo" / "assets"
    assert (assets / "tiny-llama" / "vocab.txt").read_text() == (
        assets / "tiny-bert" / "vocab.txt"
    ).read_text()
