"""`hpo trials --state/--reason`: the values come from one tuple each (hpo.trial.keys), in the help and the
checks, so a new pruning reason cannot be left out of either; count_states and the tune summary count every
reason."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState
from typer.testing import CliRunner

from hpo.commands import app
from hpo.config.study import StudyConfig
from hpo.results.trials import count_states
from hpo.run.report import TuneReport, status_line
from hpo.trial import keys as K

runner = CliRunner()


def test_every_reason_constant_is_in_the_tuple() -> None:
    constants = [v for name, v in vars(K).items() if name.startswith("REASON_")]
    assert sorted(K.PRUNED_REASONS) == sorted(constants)  # a new REASON_* must join PRUNED_REASONS


def test_trial_states_are_optunas() -> None:
    assert sorted(K.TRIAL_STATES) == sorted(s.name.lower() for s in TrialState)


def test_help_lists_every_state_and_reason() -> None:
    result = runner.invoke(app, ["trials", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    reason_line = next(line for line in result.output.splitlines() if "--reason" in line)
    state_line = next(line for line in result.output.splitlines() if "--state" in line)
    assert all(reason in reason_line for reason in K.PRUNED_REASONS), reason_line
    assert all(state in state_line for state in (*K.TRIAL_STATES, "all")), state_line


def _storage(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    optuna.create_study(study_name="s", storage=url, direction="maximize")
    return url


def test_unknown_reason_or_state_is_one_line_exit_2(tmp_path: Path) -> None:
    url = _storage(tmp_path)
    for option, needle in (("--reason", "unknown --reason 'x'"), ("--state", "unknown --state 'x'")):
        result = runner.invoke(app, ["trials", "--study", "s", "--storage", url, option, "x"])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {needle} (use one of"), lines
        assert all(v in lines[0] for v in (K.PRUNED_REASONS if option == "--reason" else K.TRIAL_STATES))


def test_bad_filter_is_reported_before_the_study_is_looked_up(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["trials", "--study", "nope", "--storage", _storage(tmp_path), "--reason", "x"]
    )
    assert result.exit_code == 2 and "unknown --reason 'x'" in result.output, result.output


def test_count_states_counts_every_reason() -> None:
    counts = count_states(optuna.create_study())
    assert {f"pruned_{r}" for r in K.PRUNED_REASONS} <= set(counts)


def test_the_tune_summary_counts_every_reason() -> None:
    for reason in K.PRUNED_REASONS:
        report = TuneReport(study="s", storage="sqlite:///x.db", target=9, finished_before=0)
        report.counts = {"complete": 1, f"pruned_{reason}": 7, "fail": 0}
        assert " 7" in report.lines()[1], (reason, report.lines()[1])


def test_the_launcher_status_line_names_every_reason_that_happened(tmp_path: Path) -> None:
    study = optuna.load_study(storage=_storage(tmp_path), study_name="s")
    for reason in (K.REASON_WORKER_DEATHS, K.REASON_OOM):
        trial = study.ask()
        trial.set_user_attr(K.PRUNED_REASON, reason)
        study.tell(trial, state=TrialState.PRUNED)
    line = status_line(StudyConfig(study="s", n_trials=9, output_dir=tmp_path), study, 2)
    assert line.startswith("2/9 finished | complete 0 | pruned by estimate 0 | OOM 1 | early stop 0 | ")
    assert "| killed their worker twice 1 | failed 0 |" in line, line
    assert "admission timeout" not in line  # only the rare reasons that happened
