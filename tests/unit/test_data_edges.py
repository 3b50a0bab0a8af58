"""Edge cases of the ReDSM5 loader: very long fields, broken quoting, duplicate posts and annotation rows,
a train split with one label."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest

from hpo.agents.criteria import CriteriaAgent
from hpo.agents.evidence import EvidenceAgent
from hpo.errors import DataError
from hpo.train.data import ANNOTATION_COLUMNS, grouped_split, read_redsm5

ANN = list[list[str]]


def _write(tmp_path: Path, annotations: ANN, posts: list[list[str]]) -> Path:
    with (tmp_path / "redsm5_annotations.csv").open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([list(ANNOTATION_COLUMNS), *annotations])
    with (tmp_path / "redsm5_posts.csv").open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["post_id", "text"], *posts])
    return tmp_path


def _dataset(n_posts: int, positive: set[int] | None = None) -> tuple[ANN, list[list[str]]]:
    """Posts p0..p{n-1}, two sentences each; status 1 on the first sentence of the posts in ``positive``
    (default: every post), 0 elsewhere."""
    ann, posts = [], []
    for p in range(n_posts):
        first, second = f"Post {p} first sentence.", f"Post {p} second sentence."
        posts.append([f"p{p}", f"{first} {second}"])
        status = "1" if positive is None or p in positive else "0"
        ann.append([f"p{p}", f"p{p}_0", first, "FATIGUE", status, ""])
        ann.append([f"p{p}", f"p{p}_1", second, "FATIGUE", "0", ""])
    return ann, posts


# --- 1. long fields, broken quoting ---


@pytest.mark.parametrize("length", [200_000, 1_000_000])
def test_a_very_long_post_loads(tmp_path: Path, length: int) -> None:
    ann, posts = _dataset(3)
    posts[1][1] = posts[1][1] + " " + "word " * (length // 5)
    _write(tmp_path, ann, posts)
    limit = csv.field_size_limit()
    _rows, loaded = read_redsm5(tmp_path)
    assert len(loaded["p1"]) >= length
    assert csv.field_size_limit() == limit  # the process-wide limit is raised while reading only
    assert len(CriteriaAgent().examples(tmp_path)) == 6  # the criteria agent does not trip on it either


def test_a_very_long_sentence_loads(tmp_path: Path) -> None:
    ann, posts = _dataset(3)
    long = "very " * 40_000 + "tired."
    ann[0][2], posts[0][1] = long, long + " " + posts[0][1]
    _, rows_posts = read_redsm5(_write(tmp_path, ann, posts))
    assert rows_posts["p0"].startswith(long)


def test_an_unterminated_quote_is_an_error_naming_the_file_and_line(tmp_path: Path) -> None:
    ann, posts = _dataset(3)
    _write(tmp_path, ann, posts)
    text = (tmp_path / "redsm5_posts.csv").read_text()
    (tmp_path / "redsm5_posts.csv").write_text(text.replace("p1,", 'p1,"', 1))  # opened, never closed
    with pytest.raises(DataError, match=r"redsm5_posts\.csv is not valid CSV") as info:
        read_redsm5(tmp_path)
    assert "line 3" in info.value.message  # header, p0, then the record that opens the quote
    assert info.value.fix and "quot" in info.value.fix


def test_an_unterminated_quote_in_a_huge_file_is_still_an_error(tmp_path: Path) -> None:
    ann, posts = _dataset(3)
    posts[2][1] = "x " * 100_000
    _write(tmp_path, ann, posts)
    text = (tmp_path / "redsm5_posts.csv").read_text()
    (tmp_path / "redsm5_posts.csv").write_text(text.replace("p0,", 'p0,"', 1))
    with pytest.raises(DataError, match=r"redsm5_posts\.csv is not valid CSV.*line 2"):
        read_redsm5(tmp_path)


def test_text_after_a_closing_quote_is_an_error(tmp_path: Path) -> None:
    ann, posts = _dataset(3)
    _write(tmp_path, ann, posts)
    path = tmp_path / "redsm5_annotations.csv"
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace("Post 1 first sentence.", '"Post 1" first sentence.')
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"redsm5_annotations\.csv is not valid CSV.*line 4"):
        read_redsm5(tmp_path)


# --- 2. a train split with one label ---


def _one_label_train(tmp_path: Path, seed: int) -> Path:
    """A dataset whose status-1 rows all fall in the val and test posts of ``seed``'s split."""
    ann, posts = _dataset(10)
    probe = CriteriaAgent().examples(_write(tmp_path, ann, posts))
    split = grouped_split(probe, seed)
    held_out = {int(ex.post_id[1:]) for ex in split.val + split.test}
    ann, posts = _dataset(10, positive=held_out)
    return _write(tmp_path, ann, posts)


def test_a_train_split_with_one_label_is_an_error(tmp_path: Path) -> None:
    data = _one_label_train(tmp_path, seed=3)
    with pytest.raises(DataError, match=r"train split .*only status 0") as info:
        CriteriaAgent().load_splits(data, 3)
    assert info.value.fix and "--seed" in info.value.fix
    assert CriteriaAgent().load_splits(data, 4).train  # another seed mixes the labels


def test_a_val_split_with_one_label_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ann, posts = _dataset(20, positive=set(range(0, 20, 2)))
    data = _write(tmp_path, ann, posts)
    # status 1 only on even posts; find a seed whose val split holds only odd posts (status 0 only)
    examples = CriteriaAgent().examples(data)
    seed = next(s for s in range(200) if len({ex.label for ex in grouped_split(examples, s).val}) == 1)
    with caplog.at_level(logging.WARNING):
        splits = CriteriaAgent().load_splits(data, seed)
    assert splits.train
    assert any("val split" in r.getMessage() and "only status 0" in r.getMessage() for r in caplog.records)


# --- 3. duplicate post ids ---


def test_a_post_id_with_two_texts_is_an_error_naming_file_id_and_rows(tmp_path: Path) -> None:
    ann, posts = _dataset(4)
    posts.append(["p1", "Another text altogether."])
    _write(tmp_path, ann, posts)
    with pytest.raises(DataError, match=r"redsm5_posts\.csv .*post_id p1.*rows 2 and 5") as info:
        read_redsm5(tmp_path)
    assert info.value.fix


def test_a_repeated_post_with_the_same_text_is_dropped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ann, posts = _dataset(4)
    posts.append(list(posts[1]))
    with caplog.at_level(logging.WARNING):
        _rows, loaded = read_redsm5(_write(tmp_path, ann, posts))
    assert len(loaded) == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "redsm5_posts.csv" in warnings[0] and "row 5" in warnings[0]


# --- 4. duplicate annotation rows ---


def test_duplicate_annotation_rows_are_dropped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ann, posts = _dataset(4)
    ann += [list(ann[0]), list(ann[3]), list(ann[0])]
    with caplog.at_level(logging.WARNING):
        rows, _posts = read_redsm5(_write(tmp_path, ann, posts))
    assert len(rows) == 8
    assert [r["sentence_id"] for r in rows] == [a[1] for a in ann[:8]]  # the first of each is kept
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "redsm5_annotations.csv" in warnings[0] and "3 duplicate" in warnings[0]
    assert "rows 9, 10, 11" in warnings[0]
    assert len(CriteriaAgent().examples(tmp_path)) == 8
    spans = EvidenceAgent().load_splits(tmp_path, 0)
    assert all("," not in ex.sentence_id for ex in spans.train + spans.val + spans.test)


def test_rows_differing_only_in_explanation_are_duplicates(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ann, posts = _dataset(4)
    ann.append([*ann[0][:5], "another annotator's words"])
    with caplog.at_level(logging.WARNING):
        rows, _posts = read_redsm5(_write(tmp_path, ann, posts))
    assert len(rows) == 8 and any("1 duplicate" in r.getMessage() for r in caplog.records)


def test_same_sentence_with_another_status_is_not_a_duplicate(tmp_path: Path) -> None:
    ann, posts = _dataset(4)
    ann.append([*ann[0][:4], "0", ""])  # a contradiction: clean_splits refuses it, it is not dropped here
    rows, _posts = read_redsm5(_write(tmp_path, ann, posts))
    assert len(rows) == 9


def test_an_evidence_train_split_without_evidence_is_an_error(tmp_path: Path) -> None:
    data = _one_label_train(tmp_path, seed=3)
    with pytest.raises(DataError, match=r"train split has no example with evidence") as info:
        EvidenceAgent().load_splits(data, 3)
    assert info.value.fix and "--seed" in info.value.fix
