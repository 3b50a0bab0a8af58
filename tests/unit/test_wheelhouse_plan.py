"""The device wheelhouse's plan (scripts/wheelhouse.py): which of hpo's dependencies it ships, assumes on the
device image (the baseline) or leaves out, and the datasets-free tokenization the device run takes."""

from __future__ import annotations

import importlib.util
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support import REPO

sys.path.insert(0, str(REPO / "scripts"))
import wheelhouse as wh


def _closure(*roots: str) -> set[str]:
    """Every project the installed ``roots`` require, transitively (extras off), as installed here."""
    seen: set[str] = set()
    todo = [canonicalize_name(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.distribution(name).requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


def test_every_hpo_dependency_is_shipped_assumed_or_left_out_once() -> None:
    deps = {wh.name_of(r) for r in wh.hpo_dependencies()}
    assert not set(wh.DEVICE_BASELINE) & set(wh.LEFT_OUT)
    assert set(wh.LEFT_OUT) <= deps, "a left-out name that is no hpo dependency (a typo?)"
    planned = {wh.name_of(r) for r in wh.plan(wh.hpo_dependencies())}
    assert planned == deps - set(wh.DEVICE_BASELINE) - set(wh.LEFT_OUT)
    assert {"torch", "transformers", "peft"} <= deps - planned  # the image's
    assert {"mlflow", "datasets"} <= set(wh.LEFT_OUT)  # too large; --no-mlflow and tokenized's fallback
    assert {"optuna", "typer", "pydantic", "nvidia-ml-py"} <= planned


def test_baseline_is_what_torch_transformers_and_peft_require() -> None:
    """The image surely has only what its torch, transformers and peft pull in: every assumed name is one."""
    assert set(wh.DEVICE_BASELINE) <= _closure("torch", "transformers", "peft")


def test_shipped_drops_the_baseline_and_refuses_a_left_out_package() -> None:
    resolved = [("Optuna", "5.1.0"), ("numpy", "2.4.6"), ("PyYAML", "6.0.4"), ("SQLAlchemy", "2.1.9")]
    assert wh.shipped(resolved) == [("optuna", "5.1.0"), ("sqlalchemy", "2.1.9")]
    with pytest.raises(SystemExit, match="left-out packages pulled in by a dependency: datasets"):
        wh.shipped([*resolved, ("datasets", "5.2.0")])


def test_platform_tags_include_older_manylinux() -> None:
    tags = wh.platform_tags("manylinux_2_28_x86_64")
    assert tags[0] == "manylinux_2_28_x86_64" and tags.index("manylinux2014_x86_64") > tags.index(
        "manylinux_2_17_x86_64"
    )
    assert "manylinux1_x86_64" in tags and "manylinux_2_29_x86_64" not in tags
    assert wh.platform_tags("linux_aarch64") == ["linux_aarch64"]
    assert wh.cp_tag("3.12") == "cp312"


def test_build_refuses_to_empty_a_folder_that_is_not_a_wheelhouse(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="not a wheelhouse"):
        wh.build(tmp_path, ["3.11"], "manylinux_2_28_x86_64")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_tokenization_without_datasets_equals_the_cached_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a device without ``datasets`` the splits are tokenized in memory, to the same tensors."""
    from transformers import AutoTokenizer

    from hpo.train.data import PairExample
    from hpo.train.tokenized import encode_cached

    tok = AutoTokenizer.from_pretrained(str(REPO / "hpo" / "assets" / "tiny-bert"))
    texts = [("feels sad", "I cry every day", 1), ("sleep", "I walk the dog", 0)]
    examples = [PairExample(a, b, label, f"p{i}", f"s{i}", "X") for i, (a, b, label) in enumerate(texts)]
    cached, _ = encode_cached(tok, examples, 16, cache_dir=tmp_path / "with")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "datasets" else find_spec(n, *a)
    )
    plain, tokenized = encode_cached(tok, examples, 16, cache_dir=tmp_path / "without")
    assert tokenized and not (tmp_path / "without").exists()
    assert plain.keys() == cached.keys()
    assert all((plain[k] == cached[k]).all() for k in plain)
