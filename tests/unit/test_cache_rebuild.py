"""A tokenization cache entry that cannot be read is rebuilt once; a second failure is an error."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from hpo.config.catalog import get_spec
from hpo.errors import CacheError, HpoError
from hpo.train import tokenized
from hpo.train.data import PairExample
from hpo.train.model import load_tokenizer
from hpo.train.tokenized import encode_cached

EXAMPLES = [
    PairExample(f"criterion {i}", f"sentence number {i} " * (1 + i % 4), i % 2, f"p{i}", f"s{i}", "FATIGUE")
    for i in range(40)
]


@pytest.fixture(scope="module")
def tok() -> Any:
    return load_tokenizer(get_spec("hpo-tiny-bert"))


def entry(cache: Path) -> Path:
    (folder,) = [p for p in (cache / "tokenized").iterdir() if p.is_dir()]
    return folder


def fresh(tok: Any, cache: Path) -> tuple[dict[str, torch.Tensor], bool]:
    return encode_cached(tok, EXAMPLES, 32, "longest", cache)


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_truncated_arrow_file_is_rebuilt_once(
    tok: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good, built = fresh(tok, tmp_path)
    assert built
    (arrow,) = entry(tmp_path).glob("*.arrow")
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])
    with caplog.at_level(logging.WARNING, logger="hpo.train.tokenized"):
        again, rebuilt = fresh(tok, tmp_path)
    assert rebuilt and same(good, again)
    lines = [r.getMessage() for r in caplog.records if "rebuilding" in r.getMessage()]
    assert len(lines) == 1 and arrow.name in lines[0]
    _, built_third = fresh(tok, tmp_path)  # the rebuilt entry is good: read, not rebuilt again
    assert not built_third
    assert [p.name for p in (tmp_path / "tokenized").iterdir() if p.is_dir()] == [entry(tmp_path).name]


def test_a_state_json_that_is_not_json_is_rebuilt_once(
    tok: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good, _ = fresh(tok, tmp_path)
    (entry(tmp_path) / "state.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="hpo.train.tokenized"):
        again, rebuilt = fresh(tok, tmp_path)
    assert rebuilt and same(good, again)
    lines = [r.getMessage() for r in caplog.records if "rebuilding" in r.getMessage()]
    assert len(lines) == 1 and "state.json" in lines[0]
    assert not fresh(tok, tmp_path)[1]


def test_an_entry_with_rows_missing_is_rebuilt(tok: Any, tmp_path: Path) -> None:
    """A truncation at a record-batch boundary reads back without an error, but short: that is corrupt too."""
    good, _ = fresh(tok, tmp_path)
    other = encode_cached(tok, EXAMPLES[:10], 32, "longest", tmp_path / "other")
    assert other[1]
    folder = entry(tmp_path)
    (short_arrow,) = entry(tmp_path / "other").glob("*.arrow")
    (arrow,) = folder.glob("*.arrow")
    arrow.write_bytes(short_arrow.read_bytes())  # a valid file with 10 rows where 40 belong
    again, rebuilt = fresh(tok, tmp_path)
    assert rebuilt and same(good, again)


def test_a_corruption_that_comes_back_is_an_error_naming_the_file(
    tok: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh(tok, tmp_path)
    folder = entry(tmp_path)
    calls: list[str] = []

    def broken(path: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(path)
        raise ValueError("Expected to be able to read 4096 bytes for message body, got 12")

    monkeypatch.setattr(tokenized, "load_from_disk", broken)
    with pytest.raises(CacheError) as err:
        fresh(tok, tmp_path)
    assert isinstance(err.value, HpoError)
    assert str(folder) in err.value.message and "after a rebuild" in err.value.message
    assert err.value.fix and "delete" in err.value.fix
    assert len(calls) == 2  # read, rebuilt once, read again: no loop


def test_a_torch_cache_file_is_rebuilt_once_then_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The evidence agent's ``.windows.pt`` files: a truncated one is rebuilt (one warning naming it); one
    that cannot be read even when just written is a CacheError naming it."""
    path = tmp_path / "tokenized" / "k.windows.pt"
    value = {"input_ids": torch.arange(12).view(3, 4)}
    built = tokenized.cached_file(path, lambda: value)
    assert built[1] and torch.equal(
        tokenized.cached_file(path, lambda: {})[0]["input_ids"], value["input_ids"]
    )
    path.write_bytes(path.read_bytes()[:40])  # truncated
    with caplog.at_level(logging.WARNING, logger="hpo.train.tokenized"):
        again, rebuilt = tokenized.cached_file(path, lambda: value)
    assert rebuilt and torch.equal(again["input_ids"], value["input_ids"])
    assert sum(str(path) in r.getMessage() for r in caplog.records) == 1

    def unreadable(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("PytorchStreamReader failed reading zip archive")

    monkeypatch.setattr(tokenized.torch, "load", unreadable)
    with pytest.raises(CacheError, match="even after a rebuild") as err:
        tokenized.cached_file(path, lambda: value)
    assert str(path) in str(err.value)
