"""Bad input: one line naming the problem and the fix, exit code 2, no traceback, no damaged study."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hpo.commands import app

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output  # stdout and stderr together


def assert_one_line_error(code: int, out: str, *needles: str) -> None:
    assert code == 2, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    assert "Traceback" not in out
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.fixture
def out_dir(tmp_path: Path) -> str:
    return str(tmp_path / "runs")


def test_unknown_agent(out_dir: str) -> None:
    assert_one_line_error(
        *invoke("tune", "--agent", "nope", "--output-dir", out_dir), "unknown agent 'nope'", "criteria"
    )


def test_unknown_model(out_dir: str) -> None:
    code, out = invoke("tune", "--models", "no-such-model-xyz", "--output-dir", out_dir, "--no-mlflow")
    assert_one_line_error(code, out, "unknown model 'no-such-model-xyz'", "configs/models.yaml")


def test_hub_model_that_cannot_load_offline(out_dir: str) -> None:
    # in the catalog (so it can be sized) but not loadable here: no network, not in the HF cache
    code, out = invoke("tune", "--models", "bert-base-uncased", "--output-dir", out_dir, "--no-mlflow")
    assert_one_line_error(code, out, "cannot load the tokenizer of 'bert-base-uncased'")


def test_malformed_yaml(tmp_path: Path, out_dir: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: x\nspace: [unclosed\n")
    assert_one_line_error(*invoke("tune", "--config", str(bad), "--output-dir", out_dir), "malformed YAML")


def test_unknown_yaml_key(tmp_path: Path, out_dir: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: x\nbatch_sise: 3\n")
    assert_one_line_error(*invoke("tune", "--config", str(bad), "--output-dir", out_dir), "batch_sise")


def test_missing_config_file(out_dir: str) -> None:
    assert_one_line_error(
        *invoke("tune", "--config", "/nonexistent.yaml", "--output-dir", out_dir), "config file not found"
    )


def test_bad_data_dir(tmp_path: Path, out_dir: str) -> None:
    code, out = invoke(
        "tune",
        "--models",
        "hpo-tiny-bert",
        "--data-dir",
        str(tmp_path / "missing"),
        "--output-dir",
        out_dir,
        "--no-mlflow",
    )
    assert_one_line_error(code, out, "missing")


def test_data_dir_missing_columns(tmp_path: Path, out_dir: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "redsm5_posts.csv").write_text("post_id,text\np1,hello\n")
    (data / "redsm5_annotations.csv").write_text("post_id,sentence_text\np1,hello\n")
    code, out = invoke(
        "tune", "--models", "hpo-tiny-bert", "--data-dir", str(data), "--output-dir", out_dir, "--no-mlflow"
    )
    assert_one_line_error(code, out, "DSM5_symptom")


def test_zero_trials(out_dir: str) -> None:
    assert_one_line_error(*invoke("tune", "--n-trials", "0", "--output-dir", out_dir), "--n-trials")


def test_impossible_sizes(tmp_path: Path, out_dir: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("space:\n  batch_size: [0, 8]\n")
    assert_one_line_error(*invoke("tune", "--config", str(bad), "--output-dir", out_dir), "batch_size")


def test_unreachable_storage(out_dir: str) -> None:
    code, out = invoke(
        "tune",
        "--models",
        "hpo-tiny-bert",
        "--storage",
        "postgresql://hpo:hpo@127.0.0.1:1/hpo",
        "--output-dir",
        out_dir,
        "--no-mlflow",
    )
    assert_one_line_error(code, out, "storage")


def test_unknown_study_for_trials(tmp_path: Path) -> None:
    import optuna

    storage = f"sqlite:///{tmp_path / 'hpo.db'}"
    optuna.create_study(study_name="other", storage=storage)
    assert_one_line_error(
        *invoke("trials", "--study", "ghost", "--storage", storage),
        "no study named 'ghost'",
        "(studies: other)",
    )


def test_bad_state_filter(tmp_path: Path) -> None:
    import optuna

    storage = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(study_name="s", storage=storage)
    assert_one_line_error(
        *invoke("trials", "--study", "s", "--storage", storage, "--state", "weird"), "weird"
    )


def test_evidence_agent_refuses_class_weighting(tmp_path: Path, out_dir: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent: evidence\nmodels: [hpo-tiny-bert]\nspace:\n  class_weighting: [false, true]\n")
    code, out = invoke("tune", "--config", str(bad), "--output-dir", out_dir, "--no-mlflow")
    assert_one_line_error(code, out, "evidence agent cannot weight classes", "class_weighting: [false]")


def test_evidence_max_length_too_short_for_the_question(tmp_path: Path, out_dir: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent: evidence\nmodels: [hpo-tiny-bert]\nn_trials: 1\nspace:\n  max_length: [32]\n")
    code, out = invoke("tune", "--config", str(bad), "--output-dir", out_dir, "--no-mlflow", "--no-report")
    assert_one_line_error(code, out, "max_length 32 leaves no room", "sample max_length of at least")


def test_data_dir_post_id_with_two_texts(tmp_path: Path, out_dir: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    posts = "".join(f"p{i},Post {i}.\n" for i in range(6))
    (data / "redsm5_posts.csv").write_text(f"post_id,text\n{posts}p2,Another text.\n")
    rows = "".join(f"p{i},p{i}_0,Post {i}.,FATIGUE,{i % 2},\n" for i in range(6))
    (data / "redsm5_annotations.csv").write_text(
        "post_id,sentence_id,sentence_text,DSM5_symptom,status,explanation\n" + rows
    )
    code, out = invoke(
        "tune",
        "--models",
        "hpo-tiny-bert",
        "--data-dir",
        str(data),
        "--output-dir",
        out_dir,
        "--no-mlflow",
        "--n-trials",
        "1",
        "--no-report",
    )
    assert_one_line_error(code, out, "redsm5_posts.csv", "post_id p2", "rows 3 and 7")
