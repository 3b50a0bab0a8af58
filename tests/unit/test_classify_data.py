"""The classify agent's data: reading CSV / JSONL / Parquet / save_to_disk, every bad-data case as one
`error:` line naming the file, the row and the fix (exit 2, nothing cached), and the split's properties."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hpo.agents.classify import CLASSIFY_SAMPLE, ClassifyAgent
from hpo.agents.stratified import split_rows
from hpo.agents.table_rows import read_rows
from hpo.agents.tabular import read_table
from hpo.commands import app
from hpo.config.columns import ColumnsConfig
from hpo.errors import DataError

runner = CliRunner()


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path, columns: ColumnsConfig | None = None, seed: int = 0) -> str:
    with pytest.raises(DataError) as info:
        ClassifyAgent(columns).load_splits(path, seed)
    return str(info.value)


# --- reading ----------------------------------------------------------------------------------------------


def test_csv_rows_keep_their_file_lines_across_quoted_newlines_and_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", 'text,label\n"two\nlines",a\nb,b\n\nc,a\n')
    table = read_table(path)
    assert table.columns["text"] == ["two\nlines", "b", "c"]
    assert table.places == ["line 2", "line 4", "line 6"]


def test_jsonl_parquet_and_save_to_disk_read_the_same_rows(tmp_path: Path) -> None:
    import datasets

    records = [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(6)]
    jsonl = write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    parquet = tmp_path / "d.parquet"
    datasets.Dataset.from_list(records).to_parquet(str(parquet))
    folder = tmp_path / "saved"
    datasets.Dataset.from_list(records).save_to_disk(str(folder))
    for path in (jsonl, parquet, folder):
        table = read_table(path)
        assert table.columns["text"] == [r["text"] for r in records], path
    assert read_table(jsonl).places[0] == "line 1" and read_table(parquet).places[0] == "row 1"


def test_a_dataset_dict_folder_uses_its_split_names(tmp_path: Path) -> None:
    import datasets

    part = {"text": ["x one", "y two", "x three", "y four"], "label": ["x", "y", "x", "y"]}
    dd = datasets.DatasetDict({s: datasets.Dataset.from_dict(part) for s in ("train", "validation", "test")})
    dd.save_to_disk(str(tmp_path / "dd"))
    splits = ClassifyAgent().load_splits(tmp_path / "dd", 0)
    assert splits.sizes() == {"train": 4, "val": 4, "test": 4}


def test_string_and_int_labels_and_the_mode_come_from_the_data(tmp_path: Path) -> None:
    agent = ClassifyAgent()
    agent.load_splits(CLASSIFY_SAMPLE, 0)
    assert (agent.names, agent.multi_label) == (("billing", "bug", "login", "shipping"), False)
    ints = "text,label\n" + "\n".join(f"row {i},{[10, 2, 33][i % 3]}" for i in range(30)) + "\n"
    agent.load_splits(write(tmp_path / "n.csv", ints), 0)
    assert (agent.names, agent.num_labels, agent.multi_label) == (("2", "10", "33"), 3, False)
    multi = "".join(
        json.dumps({"text": f"r{i}", "label": [["x"], ["x", "y"], []][i % 3]}) + "\n" for i in range(30)
    )
    agent.load_splits(write(tmp_path / "m.jsonl", multi), 0)
    assert (agent.names, agent.multi_label, agent.baseline_name) == (
        ("x", "y"),
        True,
        "per-label prior baseline",
    )


# --- bad data: one DataError naming the file, the row and the fix ------------------------------------------


def test_missing_column_lists_the_columns_there_are(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "body,cat\nhi,a\n")
    msg = error_of(path)
    assert f"{path} has no column 'text' (its columns: body, cat)" in msg and "--text-col" in msg
    msg = error_of(path, ColumnsConfig(text="body"))
    assert "no column 'label' (its columns: body, cat)" in msg and "--label-col" in msg
    assert "--group-col" in error_of(path, ColumnsConfig(text="body", label="cat", group="who"))


def test_empty_text_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "text,label\nhello,a\n   ,b\nfoo,a\n")
    assert error_of(path) == f"{path}, line 3: empty text in column 'text' (fill it in or remove the row)"


def test_empty_label_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "text,label\nhello,1\nthere,\nfoo,2\n")
    assert error_of(path).startswith(f"{path}, line 3: empty label in column 'label'")


def test_a_label_only_in_validation_or_test(tmp_path: Path) -> None:
    rows = "a a,x,train\nb b,x,train\nc c,y,train\nd d,y,validation\ne e,z,test\nf f,z,test\ng g,x,test\n"
    path = write(tmp_path / "d.csv", "text,label,split\n" + rows)
    msg = error_of(path, ColumnsConfig(split="split"))
    assert msg.startswith(f"{path}, line 6: label 'z' is in the test split but in no train row")
    assert "move a row with that label to train" in msg


def test_a_class_with_one_example(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "text,label\na,x\nb,x\nc,y\nd,y\ne,z\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}, line 6: label 'z' has only this one example")
    assert "at least 2 examples" in msg


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", b"text,label\nfine,a\nbar \xe9t\xe9,b\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}, line 3: the file is not UTF-8") and "save it as UTF-8" in msg


@pytest.mark.parametrize(
    ("content", "columns", "needle"),
    [
        (
            "text,label\n1,a\n2,b\n3,a\n",
            None,
            "column 'text' holds int64 values (e.g. 1 at line 2), but the text",
        ),
        ("text,label\nx,1.5\ny,2\nz,1\n", None, "column 'label' holds float64 values (e.g. 1.5 at line 2)"),
    ],
)
def test_a_column_of_the_wrong_type(
    tmp_path: Path, content: str, columns: ColumnsConfig | None, needle: str
) -> None:
    msg = error_of(write(tmp_path / "d.csv", content), columns)
    assert needle in msg and ("--text-col" in msg or "--label-col" in msg)


def test_a_list_of_floats_label_is_the_wrong_type(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.jsonl", "".join(json.dumps({"text": f"r{i}", "label": [0.5]}) + "\n" for i in range(4))
    )
    assert "holds list of float64 values" in error_of(path)


def test_bad_split_value_and_bad_json_line_and_unknown_format(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "text,label,s\na,x,train\nb,y,holdout\n")
    assert error_of(path, ColumnsConfig(split="s")).startswith(f"{path}, line 3: split 'holdout'")
    path = write(tmp_path / "d.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", label}\n')
    assert error_of(path).startswith(f"{path}, line 2: not valid JSON")
    path = write(tmp_path / "d.xlsx", "nope")
    assert "unknown data format '.xlsx'" in error_of(path)
    assert "does not exist" in error_of(tmp_path / "missing.csv")


BAD_FILES = {
    "cols.csv": ("body,cat\nhi,a\n", "no column 'text' (its columns: body, cat)"),
    "empty.csv": ("text,label\nhello,a\n,b\nfoo,a\n", "empty.csv, line 3: empty text"),
    "latin.csv": (b"text,label\nok,a\nbar \xe9t\xe9,b\n", "latin.csv, line 3: the file is not UTF-8"),
    "one.csv": ("text,label\na,x\nb,x\nc,y\nd,y\ne,z\n", "one.csv, line 6: label 'z' has only this one"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_tune_on_bad_data_prints_one_error_line_exits_2_and_writes_no_cache(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    content, needle = BAD_FILES[name]
    path = write(tmp_path / name, content)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    out = tmp_path / "runs"
    result = runner.invoke(
        app, ["tune", "--agent", "classify", "--data", str(path), "--no-mlflow", "--output-dir", str(out)]
    )
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1 and "Traceback" not in result.output, result.output
    assert needle in errors[0] and "(" in errors[0]
    assert not (out / "cache").exists()  # nothing tokenized, nothing half-written
    assert list(scratch.iterdir()) == []  # the datasets read cache is gone too


# --- splits -----------------------------------------------------------------------------------------------


def test_seeded_split_is_grouped_stratified_and_reproducible() -> None:
    columns = ColumnsConfig(group="customer")
    rows = read_rows(read_table(CLASSIFY_SAMPLE), columns)
    a, b, c = split_rows(rows, 3), split_rows(rows, 3), split_rows(rows, 4)
    assert [r.index for r in a.train] == [r.index for r in b.train]
    assert [r.index for r in a.val] != [r.index for r in c.val]
    groups = {s: {r.group for r in a.get(s)} for s in ("train", "val", "test")}
    assert not groups["train"] & groups["val"] and not groups["train"] & groups["test"]
    assert not groups["val"] & groups["test"]
    assert sorted(r.index for s in ("train", "val", "test") for r in a.get(s)) == list(range(len(rows.rows)))
    sizes = {s: len(a.get(s)) for s in ("train", "val", "test")}
    assert 0.6 < sizes["train"] / 300 < 0.8 and 0.1 < sizes["val"] / 300 < 0.2
    for split in ("val", "test"):  # every class in every split, in about the train split's proportions
        share = Counter(r.labels[0] for r in a.get(split))
        assert set(share) == {0, 1, 2, 3}
        assert max(share.values()) / min(share.values()) < 2.5


def test_split_column_is_followed_exactly(tmp_path: Path) -> None:
    body = "".join(
        f"t{i},{'xy'[i % 2]},{['train', 'validation', 'test', 'train'][i % 4]}\n" for i in range(16)
    )
    path = write(tmp_path / "d.csv", "text,label,split\n" + body)
    splits = ClassifyAgent(ColumnsConfig(split="split")).load_splits(path, 0)
    assert [e.text_a for e in splits.val] == ["t1", "t5", "t9", "t13"]
    assert splits.sizes() == {"train": 8, "val": 4, "test": 4}


def test_too_few_groups_for_three_splits(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "text,label,g\na,x,1\nb,y,1\nc,x,2\nd,y,2\n")
    assert "2 group(s) cannot fill train, validation and test" in error_of(path, ColumnsConfig(group="g"))


def test_shipped_samples_are_what_the_generator_writes(tmp_path: Path) -> None:
    from hpo.data.synth.classify import write_samples

    for made in write_samples(tmp_path):
        assert made.read_bytes() == (CLASSIFY_SAMPLE.parent / made.name).read_bytes(), made.name


def test_the_data_fingerprint_hashes_a_data_file_and_save_to_disk_files(tmp_path: Path) -> None:
    import datasets

    from hpo.run.fingerprint import data_fingerprint

    path = write(tmp_path / "d.csv", "text,label\na,x\n")
    first = data_fingerprint(path, 1)
    assert list(first["files"]) == ["d.csv"]
    write(path, "text,label\na,y\n")
    assert data_fingerprint(path, 1) != first
    datasets.Dataset.from_dict({"text": ["a"], "label": ["x"]}).save_to_disk(str(tmp_path / "saved"))
    assert [n for n in data_fingerprint(tmp_path / "saved", 1)["files"] if n.endswith(".arrow")]
