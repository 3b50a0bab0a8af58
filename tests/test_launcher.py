"""`hpo tune --par N`: real worker processes against one SQLite storage."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "studies" / "ci-tiny.yaml"


def tune_cmd(out: Path, *extra: str, config: Path = CONFIG) -> list[str]:
    return [
        sys.executable,
        "-m",
        "hpo",
        "tune",
        "--config",
        str(config),
        "--output-dir",
        str(out),
        "--no-mlflow",
        "--epochs",
        "1",
        *extra,
    ]


def load(out: Path) -> optuna.Study:
    return optuna.load_study(study_name="ci-tiny", storage=f"sqlite:///{(out / 'hpo.db').resolve()}")


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.pop("HPO_INJECT_OOM", None)
    return e


def run_cli(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run an `hpo` command line to its end (output captured, fault injection off)."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env())


def wait_for(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


@pytest.mark.slow
def test_three_workers_twenty_trials(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    res = run_cli(tune_cmd(out, "--par", "3", "--n-trials", "20"), timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    study = load(out)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert 20 <= len(finished) <= 22
    assert not [t for t in study.trials if t.state in (TrialState.FAIL, TrialState.RUNNING)]
    assert "database is locked" not in res.stdout + res.stderr
    assert "3 workers" in res.stdout


def _running_trial_file(out: Path) -> list[Path]:
    return list((out / "workers" / "ci-tiny").glob("*.trial"))


def run_until_a_trial_runs(
    out: Path, n_trials: int, act: Callable[[subprocess.Popen[str]], None], timeout: float
) -> tuple[int, str]:
    """Start `hpo tune --par 2` (slow trials); when a worker runs a trial, call ``act(proc)``; wait."""
    proc = subprocess.Popen(
        [*tune_cmd(out, "--par", "2", "--n-trials", str(n_trials)), "--epochs", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env(),
    )
    try:
        assert wait_for(lambda: bool(_running_trial_file(out)), 120), "no worker started a trial"
        act(proc)
        stdout, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, stdout


@pytest.mark.slow
def test_kill_9_worker_trial_is_failed_then_retried(tmp_path: Path) -> None:
    out = tmp_path / "runs"

    # slow trials (3 epochs, full train split) so there is time to kill one mid-trial
    def kill_a_worker(proc: subprocess.Popen[str]) -> None:
        os.kill(int(_running_trial_file(out)[0].stem), signal.SIGKILL)

    returncode, stdout = run_until_a_trial_runs(out, 4, kill_a_worker, timeout=600)
    assert returncode == 0, stdout[-3000:]
    assert "died with exit code" in stdout
    study = load(out)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and failed[0].user_attrs.get("error") == "worker process died"
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert retried and retried[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    # the retry re-runs the same config (a kill during sampling leaves the rest to be sampled anew)
    assert failed[0].params.items() <= retried[0].params.items()
    assert len([t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) >= 4


@pytest.mark.slow
def test_sigint_leaves_no_running_trial_and_rerun_resumes(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    returncode, stdout = run_until_a_trial_runs(
        out, 6, lambda proc: proc.send_signal(signal.SIGINT), timeout=120
    )
    assert returncode == 130, stdout[-3000:]
    study = load(out)
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    kept = {t.number: t.state for t in study.trials if t.state.is_finished()}
    res = run_cli(tune_cmd(out, "--n-trials", "3"), timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    after = load(out)
    assert {t.number: t.state for t in after.trials if t.number in kept} == kept
    assert len([t for t in after.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) >= 3


def test_worker_admission_reserves_the_trial_beside_its_own_context(tmp_path: Path) -> None:
    from hpo.config import load_config
    from hpo.memory.budget import CUDA_CONTEXT
    from hpo.run.ledger import Ledger
    from hpo.run.worker import make_admission
    from hpo.trial.sizing import MemoryPolicy

    cfg = load_config(CONFIG, {"output_dir": tmp_path, "par": 2})
    assert make_admission(cfg, MemoryPolicy(None, 0), "gpu") is None  # no budget: nothing to admit by
    admission = make_admission(cfg, MemoryPolicy(4 * 2**30, 2**30, simulated=True), "GPU-x")
    assert admission is not None
    ledger = Ledger(admission.ledger.path, "GPU-x", 3 * 2**30)
    admission.start()  # the worker's CUDA context is on the card from now on, trial or not
    assert ledger.in_use() == ledger.resident() == CUDA_CONTEXT
    with admission([CUDA_CONTEXT + 100 * 2**20], 7) as form:  # a device total includes the context
        (res,) = [r for r in ledger.reservations() if r.kind == "trial"]
        assert (form, res.bytes, res.trial) == (0, 100 * 2**20, 7)
        assert ledger.in_use() == CUDA_CONTEXT + 100 * 2**20
    assert ledger.in_use() == CUDA_CONTEXT
    admission.close()
    assert ledger.in_use() == 0


def test_sizer_keeps_room_for_the_other_workers_contexts() -> None:
    from hpo.config import TrialConfig
    from hpo.memory.budget import CUDA_CONTEXT
    from hpo.memory.catalog import get_spec
    from hpo.trial.sizing import MemoryPolicy, Sizer

    spec, tcfg = (
        get_spec("hpo-tiny-bert"),
        TrialConfig(model="hpo-tiny-bert", learning_rate=1e-4, batch_size=16, max_length=48),
    )
    alone = Sizer(MemoryPolicy(0, 0), num_labels=2)
    need = alone.estimate(spec, tcfg).device_total_bytes
    card = need + CUDA_CONTEXT // 2  # fits alone, not beside one more worker's context
    sizer = Sizer(MemoryPolicy(card, 0, simulated=True), num_labels=2)
    assert sizer.over_budget(spec, tcfg, sizer.estimate(spec, tcfg)) is None
    sizer.memory.resident_bytes = CUDA_CONTEXT  # `--par 2`: the other worker's context
    reason = sizer.over_budget(spec, tcfg, sizer.estimate(spec, tcfg))
    assert reason is not None and "beside the other workers' 0.50 GB" in reason
    assert sizer.memory.limit_bytes == card - CUDA_CONTEXT


def test_worker_joins_an_existing_study(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    res = run_cli(tune_cmd(out, "--n-trials", "1"), timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    storage = f"sqlite:///{(out / 'hpo.db').resolve()}"
    # a second shell joins with the study's stored config and a higher target from its own YAML
    cfg = tmp_path / "more.yaml"
    cfg.write_text(CONFIG.read_text().replace("n_trials: 3", "n_trials: 3\nmax_train_examples: 32"))
    res = run_cli(
        [
            sys.executable,
            "-m",
            "hpo",
            "worker",
            "--study",
            "ci-tiny",
            "--storage",
            storage,
            "--config",
            str(cfg),
            "--output-dir",
            str(out),
        ],
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    finished = [t for t in load(out).trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3
    res = run_cli(
        [sys.executable, "-m", "hpo", "worker", "--study", "ghost", "--storage", storage], timeout=120
    )
    assert res.returncode == 2 and "no study named 'ghost'" in res.stderr


@pytest.mark.slow
def test_ledger_admits_one_trial_at_a_time_when_two_do_not_fit(tmp_path: Path) -> None:
    """A simulated card with room for both workers' CUDA contexts and ONE tiny trial (~0.11 GiB each)."""
    from hpo.memory.budget import CUDA_CONTEXT

    out, cfg = tmp_path / "runs", tmp_path / "one-at-a-time.yaml"
    card_mib = 2 * CUDA_CONTEXT // 2**20 + 150
    cfg.write_text(CONFIG.read_text() + f"gpu_memory: {card_mib}MiB\nheadroom_gb: 0.0\n")
    res = run_cli([*tune_cmd(out, "--par", "2", "--n-trials", "4", config=cfg), "--epochs", "2"], timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    trials = [t for t in load(out).trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(trials) >= 4 and not [t for t in load(out).trials if t.state == TrialState.FAIL]
    held = sorted((t.user_attrs["admitted_at"], t.user_attrs["released_at"]) for t in trials)
    assert all(end <= nxt for (_, end), (nxt, _) in itertools.pairwise(held)), held  # never together
    assert sum(t.user_attrs["admission_wait_s"] for t in trials) > 0.3  # one worker waited for the other
    ledger = json.loads((out / "hpo.ledger.json").read_text())
    assert [e["reservations"] + e["waiting"] for e in ledger.values()] == [[]]
    assert (
        "| ledger 0.0/" in res.stdout and "0 admitted, 0 waiting" in res.stdout
    )  # the launcher's status  # trials and contexts released
