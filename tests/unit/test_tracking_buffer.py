"""MLflow writes never fail a trial: retried, else buffered in order and replayed (hpo.tracking.buffer)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from hpo.tracking.buffer import PENDING_PREFIX, Op, Outbox, pending_files, replay_folder


class FlakyMlflow:
    """Executes ops while ``up``; raises (like a locked database) while down."""

    def __init__(self) -> None:
        self.up = True
        self.done: list[Op] = []
        self.calls = 0

    def __call__(self, op: Op) -> str | None:
        self.calls += 1
        if not self.up:
            raise RuntimeError("database is locked")
        self.done.append(op)
        return f"run{len(self.done)}" if op["op"] == "create_run" else None


def outbox(tmp_path: Path, mlflow: Any, **kw: Any) -> Outbox:
    return Outbox(tmp_path / "pending", mlflow, backoff_s=0.0, **kw)


def test_write_goes_through_when_mlflow_answers(tmp_path: Path) -> None:
    mlflow = FlakyMlflow()
    box = outbox(tmp_path, mlflow)
    run = box.submit({"op": "create_run", "ref": box.new_ref()})
    box.submit({"op": "log_batch", "run": run, "metrics": [["m", 1.0, 0, 0]]})
    assert run == "run1" and len(mlflow.done) == 2 and not pending_files(tmp_path / "pending")


def test_down_mlflow_buffers_in_order_then_replays_with_the_real_run_id(tmp_path: Path) -> None:
    mlflow = FlakyMlflow()
    mlflow.up = False
    box = outbox(tmp_path, mlflow, hold_s=3600.0)
    run = box.submit({"op": "create_run", "ref": box.new_ref()})
    assert run is not None and run.startswith(PENDING_PREFIX)  # the trial gets a placeholder, no error
    box.submit({"op": "log_batch", "run": run, "metrics": [["m", 1.0, 0, 0]]})
    box.submit({"op": "terminate", "run": run, "status": "FINISHED"})
    assert mlflow.calls == 2  # tried, retried once, then buffered: later ops wait, no call while held
    lines = box.path.read_text().splitlines()
    assert [json.loads(x)["op"] for x in lines] == ["create_run", "log_batch", "terminate"]
    mlflow.up = True
    assert box.flush()
    assert [op["op"] for op in mlflow.done] == ["create_run", "log_batch", "terminate"]
    assert all(op.get("run", "run1") == "run1" for op in mlflow.done)
    assert not box.path.exists()


def test_later_writes_wait_behind_buffered_ones(tmp_path: Path) -> None:
    mlflow = FlakyMlflow()
    mlflow.up = False
    box = outbox(tmp_path, mlflow, hold_s=3600.0)
    box.submit({"op": "log_batch", "run": "r", "metrics": [["a", 1.0, 0, 0]]})
    mlflow.up = True
    box.submit({"op": "log_batch", "run": "r", "metrics": [["b", 1.0, 0, 0]]})  # held: order is kept
    assert not mlflow.done and len(box.pending) == 2
    assert box.flush() and [op["metrics"][0][0] for op in mlflow.done] == ["a", "b"]


def test_a_write_mlflow_rejects_for_good_is_dropped(tmp_path: Path) -> None:
    def reject(op: Op) -> str | None:
        raise ValueError("Changing param values is not allowed")

    box = outbox(tmp_path, reject, permanent=lambda exc: isinstance(exc, ValueError))
    assert box.submit({"op": "log_batch", "run": "r", "params": {"a": "1"}}) is None
    assert not box.pending


def test_replay_folder_replays_files_of_dead_processes_only(tmp_path: Path) -> None:
    folder = tmp_path / "pending"
    folder.mkdir()
    ops = [
        {"op": "create_run", "ref": "pending-x"},
        {"op": "terminate", "run": "pending-x", "status": "FAILED"},
    ]
    dead = folder / "somehost-4194000-abcd.jsonl"  # another host: its process may still be running
    mine = Outbox(folder, FlakyMlflow())  # this (live) process's file is skipped too
    dead.write_text("".join(json.dumps(op) + "\n" for op in ops))
    mine.pending = [ops[0]]
    mine._write()
    gone = folder / f"{socket.gethostname()}-4194001-abcd.jsonl"
    gone.write_text("".join(json.dumps(op) + "\n" for op in ops))
    mlflow = FlakyMlflow()
    assert replay_folder(folder, mlflow) == (2, 0)
    assert mlflow.done[1] == {"op": "terminate", "run": "run1", "status": "FAILED"}
    assert not gone.exists() and dead.exists() and mine.path.exists()


class BufferedTracker:
    """The MLflow tracker's use of the outbox, over a FlakyMlflow (what hpo.trial.outcomes calls)."""

    def __init__(self, box: Outbox) -> None:
        self.box = box

    def start_trial(
        self, number: int, params: dict[str, Any], tags: dict[str, str] | None = None
    ) -> str | None:
        return self.box.submit({"op": "create_run", "ref": self.box.new_ref()})

    def end_trial(self, run_id: str | None, status: str, tags: dict[str, str] | None = None) -> None:
        self.box.submit({"op": "terminate", "run": run_id, "status": status})

    def resolve(self, run_id: str | None) -> str | None:
        return self.box.resolve(run_id)


def test_a_trial_started_while_mlflow_was_down_ends_with_the_real_run_id(tmp_path: Path) -> None:
    import optuna
    import torch

    from hpo.config.catalog import get_spec
    from hpo.config.study import TrialConfig
    from hpo.device.faults import FaultInjector
    from hpo.trial import keys as K
    from hpo.trial import outcomes
    from hpo.trial.context import TrialContext
    from hpo.trial.sizing import MemoryPolicy, Sizer

    mlflow = FlakyMlflow()
    mlflow.up = False
    tracker = BufferedTracker(outbox(tmp_path, mlflow, hold_s=0.0))
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    tcfg = TrialConfig(model="hpo-tiny-bert", learning_rate=1e-4, batch_size=8, max_length=32)
    spec = get_spec("hpo-tiny-bert")
    budget = Sizer(MemoryPolicy(None, 0), num_labels=2).estimate(spec, tcfg)
    ctx = TrialContext(trial, tcfg, spec, tcfg, budget, torch.device("cpu"), False, FaultInjector(None, 0))
    ctx.run_id = tracker.start_trial(trial.number, {})
    trial.set_user_attr(K.MLFLOW_RUN_ID, ctx.run_id)  # as outcomes.started records it
    assert ctx.run_id is not None and ctx.run_id.startswith(PENDING_PREFIX)
    outcomes.run_id_resolved(ctx, tracker)  # type: ignore[arg-type]
    assert trial.user_attrs[K.MLFLOW_RUN_ID].startswith(PENDING_PREFIX)  # still down: nothing to record
    mlflow.up = True
    tracker.end_trial(ctx.run_id, "FINISHED")  # MLflow answers again: the buffered run is created
    outcomes.run_id_resolved(ctx, tracker)  # type: ignore[arg-type]
    study.tell(trial, 0.5)
    assert ctx.run_id == "run1" and study.trials[0].user_attrs[K.MLFLOW_RUN_ID] == "run1"
    assert [op["op"] for op in mlflow.done] == ["create_run", "terminate"]
