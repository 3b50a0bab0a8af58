"""A storage URL whose driver is missing or whose dialect is unknown says so (not "is the server
reachable?"), in `hpo tune`'s setup lock, in the storage itself and on the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hpo.commands import app
from hpo.config.study import StudyConfig
from hpo.errors import HpoError
from hpo.run.bootstrap import setup_lock
from hpo.storage.study import make_storage

MISSING_DRIVER = "mysql://u:s3cr%2Ft@127.0.0.1:1/db"  # SQLAlchemy's default MySQL driver is mysqlclient
UNKNOWN_DRIVER = "postgresql+psycopg3://u:s3cr%2Ft@127.0.0.1:1/db"  # the dialect is postgresql+psycopg


def _check(err: HpoError, what: str, use: str) -> None:
    text = str(err)
    assert what in err.message and use in str(err.fix), text
    assert "reachable" not in text and "s3cr" not in text


@pytest.mark.parametrize(
    ("url", "what", "use"),
    [
        (MISSING_DRIVER, "driver 'mysqldb' of mysql:// is not installed", "mysql+pymysql://"),
        (UNKNOWN_DRIVER, "unknown database driver 'postgresql+psycopg3'", "postgresql+psycopg://"),
    ],
)
def test_setup_and_storage_name_the_driver_problem(tmp_path: Path, url: str, what: str, use: str) -> None:
    cfg = StudyConfig(study="s", storage=url, output_dir=tmp_path)
    with pytest.raises(HpoError) as info, setup_lock(cfg):
        pass
    _check(info.value, what, use)
    with pytest.raises(HpoError) as info:
        make_storage(url)
    _check(info.value, what, use)


def test_the_command_line_says_which_driver_to_use() -> None:
    res = CliRunner().invoke(app, ["trials", "--study", "s", "--storage", UNKNOWN_DRIVER])
    assert res.exit_code == 2
    assert "unknown database driver 'postgresql+psycopg3'" in res.output and "Traceback" not in res.output
