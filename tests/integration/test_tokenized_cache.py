"""The tokenization cache is shared by processes: the second process does no tokenization."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import quiet_env

SCRIPT = """
import sys
from pathlib import Path
from hpo.agents.criteria import CriteriaAgent
from hpo.config.catalog import get_spec
from hpo.paths import SAMPLE_DATA_DIR
from hpo.trial.training import EncodedData

data = EncodedData(CriteriaAgent().load_splits(SAMPLE_DATA_DIR, 0), cache_dir=Path(sys.argv[1]))
train, val = data.get(get_spec("hpo-tiny-bert"), 64)
print(data.tokenized, int(train["input_ids"].sum()), int(val["input_ids"].sum()))
"""


def test_a_second_process_reuses_the_first_ones_tokenization(tmp_path: Path) -> None:
    def run() -> list[int]:
        res = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(tmp_path / "cache")],
            capture_output=True,
            text=True,
            env=quiet_env(),
            timeout=300,
        )
        assert res.returncode == 0, res.stderr[-2000:]
        return [int(x) for x in res.stdout.split()]

    first, second = run(), run()
    assert first[0] == 2 and second[0] == 0  # train and validation tokenized once, by the first process
    assert first[1:] == second[1:]  # the same tensors
    assert len(list((tmp_path / "cache" / "tokenized").iterdir())) >= 2
