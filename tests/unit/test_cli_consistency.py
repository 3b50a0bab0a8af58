"""One command line: --version, one error style (Click's usage errors too), switches that --help shows as
switches, `hpo estimate`'s exit code and its flag-naming errors, shell completion. Each goes through the
console script's own entry (hpo.commands.entry.run), as a user's shell does."""

from __future__ import annotations

import json
import platform
import re
from pathlib import Path

import pytest

from hpo.commands import app
from hpo.commands.entry import run
from hpo.memory.budget import PRECISIONS

FITS = ["estimate", "--model", "hpo-tiny-bert", "--batch-size", "8", "--max-length", "64"]
TOO_BIG = ["estimate", "--model", "Llama-3.1-70B", "--batch-size", "8", "--max-length", "512"]


def hpo(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(app, list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "╭" not in err and "Traceback" not in err and "Usage:" not in err
    return lines[0]


def test_version_names_hpo_python_and_the_libraries(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = hpo(capsys, "--version")
    assert code == 0
    assert re.fullmatch(
        r"hpo \d+\.\d+\.\d+\S* \(Python .+; torch .+, transformers .+, optuna .+, mlflow .+\)\n", out
    )
    assert platform.python_version() in out


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["trials", "--study", "x", "--bogus"], ["no such option: --bogus", "(see `hpo trials --help`)"]),
        (["trials"], ["missing option '--study'", "(see `hpo trials --help`)"]),
        (["nope"], ["no such command 'nope'", "(see `hpo --help`)"]),
        ([*FITS, "--batch-size", "0"], ["'--batch-size'", "(see `hpo estimate --help`)"]),
    ],
)
def test_usage_errors_are_one_error_line_with_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], needles: list[str]
) -> None:
    code, out, err = hpo(capsys, *args)
    line = one_error_line(err)
    assert code == 2 and out == ""
    for needle in needles:
        assert needle in line, line


def test_help_shows_no_value_type_for_any_switch(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    for command in ([], ["tune"], ["estimate"], ["trials"], ["best"], ["oom"], ["report"], ["worker"]):
        code, out, _ = hpo(capsys, *command, "--help")
        assert code == 0 and "--help" in out
        assert "<bool>" not in out, command  # a switch takes no value; its help must not say it does
    _, out, _ = hpo(capsys, "estimate", "--help")
    assert re.search(r"--grad-checkpointing\s+Activation", out), out


@pytest.mark.parametrize("word", ["true", "False", "1"])
def test_a_switch_given_a_value_says_how_to_write_it(capsys: pytest.CaptureFixture[str], word: str) -> None:
    code, _, err = hpo(capsys, *FITS, "--grad-checkpointing", word)
    line = one_error_line(err)
    assert code == 2
    assert "--grad-checkpointing is a switch and takes no value" in line
    assert "write --grad-checkpointing alone" in line


def test_the_switch_itself_works(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = hpo(capsys, *FITS, "--grad-checkpointing", "--json")
    assert code == 0 and json.loads(out)["request"]["grad_checkpointing"] is True


def test_estimate_exit_code_says_whether_it_fits(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = hpo(capsys, *FITS, "--gpu-memory", "24GB")
    assert code == 0 and "fits" in out and "does NOT fit" not in out
    code, out, err = hpo(capsys, *TOO_BIG, "--gpu-memory", "24GB")
    assert code == 1 and "does NOT fit" in out and err == ""  # an answer, not an error
    code, out, _ = hpo(capsys, *TOO_BIG, "--gpu-memory", "24GB", "--json")
    assert code == 1 and json.loads(out)["fits"] is False


def test_a_bad_precision_names_the_flag_and_every_allowed_value(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = hpo(capsys, *FITS, "--precision", "fp8")
    line = one_error_line(err)
    assert code == 2 and "invalid value for '--precision': 'fp8' is not one of" in line
    for value in PRECISIONS:
        assert value in line, line


def test_help_lists_the_allowed_values_from_the_same_source(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    _, out, _ = hpo(capsys, "estimate", "--help")
    assert "<" + "|".join(PRECISIONS) + ">" in out


def test_a_missing_calibration_file_is_an_error_naming_the_flag(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "missing.json"
    code, out, err = hpo(capsys, *FITS, "--calibration", str(missing))
    line = one_error_line(err)
    assert code == 2 and out == ""
    assert f"--calibration {missing}: no such file" in line and "calibration.json" in line


@pytest.mark.parametrize(
    ("text", "needle"), [("{not json", "is not JSON"), ('{"a": 1}', "not an hpo calibration")]
)
def test_a_calibration_file_that_is_not_one_is_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, needle: str
) -> None:
    bad = tmp_path / "cal.json"
    bad.write_text(text)
    code, _, err = hpo(capsys, *FITS, "--calibration", str(bad))
    assert code == 2 and needle in one_error_line(err)


def test_shell_completion_completes_commands_and_values(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def complete(words: str) -> list[str]:
        monkeypatch.setenv("_HPO_COMPLETE", "complete_bash")
        monkeypatch.setenv("COMP_WORDS", words)
        monkeypatch.setenv("COMP_CWORD", str(len(words.split(" ")) - 1))
        with pytest.raises(SystemExit) as stop:
            run(app, [])
        assert stop.value.code == 0
        return capsys.readouterr().out.split()

    assert complete("hpo tr") == ["trials"]
    assert complete("hpo estimate --precision ") == list(PRECISIONS)
    monkeypatch.delenv("_HPO_COMPLETE")
    with pytest.raises(SystemExit) as stop:
        run(app, ["--show-completion", "bash"])
    assert stop.value.code == 0 and "_HPO_COMPLETE=complete_bash" in capsys.readouterr().out


def test_a_bare_hpo_prints_its_help_once(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = hpo(capsys)
    assert code == 2 and err == ""  # Click's exit code for a missing command
    assert out.count("Usage: hpo") == 1 and out.count("Commands") == 1, out
