"""Host-RAM admission: the estimate, the host ledger, --host-memory, the CPU fallback's room check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hpo.commands import app
from hpo.config.catalog import get_spec
from hpo.config.study import load_config
from hpo.device.faults import FaultInjector
from hpo.memory.budget import MemoryRequest
from hpo.memory.host import PROCESS_BASELINE, host_available, host_headroom, host_peak_bytes
from hpo.run.host import HOST_KEY, HostLedgerAdmission, host_capacity
from hpo.run.ledger import Ledger, LedgerTooLarge
from hpo.run.reservations import usage_line
from hpo.tracking.tracker import NullTracker
from hpo.train.loop import TrainResult
from hpo.trial.admission import no_admission
from hpo.trial.attempts import Attempts
from hpo.trial.context import TrialContext
from hpo.trial.sizing import MemoryPolicy, Sizer
from tests.support import BASE

MIB, GIB = 2**20, 2**30


def test_cpu_host_peak_is_the_eager_training_estimate_and_gpu_only_loads_the_model() -> None:
    minilm = get_spec("all-MiniLM-L6-v2")
    req = MemoryRequest(batch_size=32, max_length=512)
    cpu = host_peak_bytes(minilm, req, on_gpu=False)
    assert 11 * GIB < cpu < 12.5 * GIB  # the config: ~10 GB RSS measured per worker
    assert host_peak_bytes(minilm, MemoryRequest(batch_size=8, max_length=128), on_gpu=False) < cpu / 10
    gpu = host_peak_bytes(minilm, req, on_gpu=True)
    assert gpu == 2 * 4 * minilm.params  # independent of the batch: it trains on the card


def test_host_capacity_is_host_memory_less_a_tenth(tmp_path: Path) -> None:
    cfg = load_config(None, {"output_dir": tmp_path, "host_memory": "10GB"})
    assert host_capacity(cfg) == 10 * GIB - host_headroom(10 * GIB) == 9 * GIB
    assert 0 < host_capacity(load_config(None, {"output_dir": tmp_path})) <= host_available()


def test_host_ledger_holds_baselines_and_admits_trials_that_fit(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "hpo.ledger.json", HOST_KEY, PROCESS_BASELINE + 100 * MIB, poll_interval=0.01)
    host = HostLedgerAdmission(ledger)
    host.start()
    assert ledger.resident() == PROCESS_BASELINE
    with host(60 * MIB, trial=0) as res:
        assert res.bytes == 60 * MIB and ledger.try_reserve(60 * MIB) is None  # a second does not fit
    assert ledger.try_reserve(60 * MIB) is not None  # released
    with pytest.raises(LedgerTooLarge, match="held by the worker processes themselves"), host(200 * MIB, 1):
        pass
    assert "host RAM" in usage_line(tmp_path / "hpo.ledger.json")
    host.close()
    assert ledger.resident() == 0


def test_cpu_fallback_needs_room_on_the_host() -> None:
    roomy = Sizer(MemoryPolicy(None, 0, host_bytes=None), num_labels=2)
    assert roomy.host_has_room(1 * MIB)
    tiny_host = Sizer(MemoryPolicy(None, 0, host_bytes=200 * MIB), num_labels=2)
    assert tiny_host.host_has_room(160 * MIB) and not tiny_host.host_has_room(190 * MIB)
    need = tiny_host.host_bytes(get_spec(BASE.model), BASE, on_cuda=False)
    assert 0 < need < 200 * MIB


@pytest.mark.parametrize("value", ["8XB", "-1GB", "lots"])
def test_bad_host_memory_is_one_error_line(tmp_path: Path, value: str) -> None:
    res = CliRunner().invoke(app, ["tune", "--host-memory", value, "--output-dir", str(tmp_path)])
    assert res.exit_code == 2
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "host memory" in lines[0], res.output
    assert "8GB" in lines[0]
    assert not os.listdir(tmp_path)


def _ctx_on_simulated_gpu(sizer: Sizer) -> TrialContext:
    import optuna
    import torch

    trial = optuna.create_study(storage=optuna.storages.InMemoryStorage()).ask()
    spec = get_spec(BASE.model)
    return TrialContext(
        trial=trial,
        sampled=BASE,
        spec=spec,
        tcfg=BASE,
        budget=sizer.estimate(spec, BASE),
        device=torch.device("cpu"),
        on_gpu=True,  # a (simulated) GPU trial that ran out of memory
        injector=FaultInjector(None, trial.number),
    )


def _never_trains(ctx: TrialContext) -> TrainResult:
    raise AssertionError("only the policy between attempts is tested here")


@pytest.mark.parametrize(("host_mib", "falls_back"), [(None, True), (1, False)])
def test_on_oom_cpu_falls_back_only_when_the_host_has_room(host_mib: int | None, falls_back: bool) -> None:
    policy = MemoryPolicy(24 * GIB, 0, simulated=True, host_bytes=host_mib * MIB if host_mib else None)
    sizer = Sizer(policy, num_labels=2)
    attempts = Attempts(_never_trains, no_admission, sizer, NullTracker(), "cpu", elastic=False)
    ctx = _ctx_on_simulated_gpu(sizer)
    assert attempts._retry(ctx) is falls_back
    assert ctx.on_gpu is not falls_back
