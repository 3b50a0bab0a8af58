"""`hpo sync-mlflow` and worker-side opening against a real MLflow database (no training)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hpo.commands import app
from hpo.errors import HpoError
from hpo.tracking.tracker import MLflowTracker


def test_sync_mlflow_replays_a_dead_process_file_into_real_mlflow(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    uri = f"sqlite:///{out / 'mlflow.db'}"
    with pytest.raises(HpoError, match="hpo tune"):  # a worker opens, never creates
        MLflowTracker(uri, "s", out / "mlartifacts", create=False)
    tracker = MLflowTracker(uri, "s", out / "mlartifacts")
    ops = [
        {
            "op": "create_run",
            "ref": "pending-1",
            "experiment": tracker.experiment_id,
            "name": "trial-0",
            "tags": {"trial_number": "0"},
        },
        {"op": "log_batch", "run": "pending-1", "metrics": [["best_val_macro_f1", 0.5, 0, 0]]},
        {"op": "terminate", "run": "pending-1", "status": "FINISHED"},
    ]
    folder = out / "mlflow-pending" / "s"
    folder.mkdir(parents=True)
    (folder / f"{socket.gethostname()}-4194002-ab.jsonl").write_text(
        "".join(json.dumps(o) + "\n" for o in ops)
    )
    result = CliRunner().invoke(app, ["sync-mlflow", "--study", "s", "--output-dir", str(out)])
    assert result.exit_code == 0 and "replayed 3" in result.output, result.output
    (run,) = tracker.client.search_runs([tracker.experiment_id], filter_string="tags.trial_number = '0'")
    assert run.info.status == "FINISHED" and run.data.metrics["best_val_macro_f1"] == 0.5
    assert not list(folder.glob("*.jsonl"))
