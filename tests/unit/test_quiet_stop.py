"""A stopped process (Ctrl-C, SIGTERM, its launcher gone) ends without tracebacks: Optuna's log of the
interrupted trial and a stop swallowed by a finalizer are dropped (the trial keeps its `error`)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import pytest

from hpo import lifecycle
from hpo.lifecycle import Stopped

OPTUNA_LOG = "optuna.study._optimize"


@pytest.fixture
def optuna_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    logger = logging.getLogger(OPTUNA_LOG)
    saved = list(logger.filters)
    lifecycle.quiet_stopped_trials()
    caplog.set_level(logging.WARNING, logger=OPTUNA_LOG)
    yield caplog
    logger.filters[:] = saved


def _optuna_logs_a_failed_trial(number: int, exc: BaseException) -> None:
    """What optuna.study._optimize._log_failed_trial logs (two records)."""
    logger = logging.getLogger(OPTUNA_LOG)
    try:
        raise exc
    except BaseException:
        info = sys.exc_info()
    logger.warning(
        f"Trial {number} failed with parameters: {{}} because of the following error: {exc!r}.", exc_info=info
    )
    logger.warning(f"Trial {number} failed with value None.")


def test_a_trial_interrupted_by_a_stop_is_not_logged_with_a_traceback(
    optuna_log: pytest.LogCaptureFixture,
) -> None:
    _optuna_logs_a_failed_trial(3, Stopped(15, "launcher (pid 7) died"))
    assert optuna_log.records == []


def test_a_trial_failed_by_an_error_is_still_logged(optuna_log: pytest.LogCaptureFixture) -> None:
    _optuna_logs_a_failed_trial(4, RuntimeError("boom"))
    assert len(optuna_log.records) == 2 and optuna_log.records[0].exc_info is not None


def test_a_stop_swallowed_by_a_finalizer_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    saved = sys.unraisablehook
    try:
        lifecycle.quiet_stopped_trials()

        class Finalized:
            def __del__(self) -> None:
                raise Stopped(15, "launcher (pid 7) died")

        Finalized()  # its __del__ raises: Python reports it through sys.unraisablehook
        assert "Traceback" not in capsys.readouterr().err
    finally:
        sys.unraisablehook = saved
