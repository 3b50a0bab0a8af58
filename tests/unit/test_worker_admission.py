"""A worker's ledger admission and sizing beside the other workers' CUDA contexts (no processes)."""

from __future__ import annotations

from pathlib import Path

import optuna

from tests.support import CI_CONFIG

CONFIG = CI_CONFIG


def test_worker_admission_reserves_the_trial_beside_its_own_context(tmp_path: Path) -> None:
    from hpo.config.study import load_config
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
    from hpo.config.catalog import get_spec
    from hpo.config.study import TrialConfig
    from hpo.memory.budget import CUDA_CONTEXT
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


def test_admission_timeout_prunes_the_trial_with_its_reason(tmp_path: Path) -> None:
    import pytest
    import torch

    from hpo.config.catalog import get_spec
    from hpo.config.study import TrialConfig
    from hpo.device.faults import FaultInjector
    from hpo.run.ledger import Ledger
    from hpo.run.worker import LedgerAdmission
    from hpo.tracking.tracker import NullTracker
    from hpo.trial.attempts import Attempts
    from hpo.trial.context import TrialContext
    from hpo.trial.keys import PRUNED_REASON, REASON_ADMISSION_TIMEOUT
    from hpo.trial.sizing import MemoryPolicy, Sizer

    gib = 2**30
    ledger = Ledger(tmp_path / "hpo.ledger.json", "GPU-x", 4 * gib, poll_interval=0.01)
    ledger.try_reserve(3 * gib, label="a neighbour's trial")  # leaves 1 GiB, never released
    sizer = Sizer(MemoryPolicy(5 * gib, gib, simulated=True), num_labels=2)
    spec = get_spec("hpo-tiny-bert")
    tcfg = TrialConfig(model="hpo-tiny-bert", learning_rate=1e-4, batch_size=16, max_length=48)
    budget = sizer.estimate(spec, tcfg)
    need = 2 * gib + budget.components["cuda_context"]  # two GiB beyond the context: it waits
    trial = optuna.create_study().ask()
    ctx = TrialContext(trial, tcfg, spec, tcfg, budget, torch.device("cpu"), True, FaultInjector(None, 0))
    ctx.budget = type(budget)(budget.components, budget.total_bytes, need, budget.method, budget.phases)
    admission = LedgerAdmission(ledger, budget.components["cuda_context"], 0, lighter_after=60.0, timeout=0.2)

    def never(_: TrialContext) -> object:
        raise AssertionError("a trial that was not admitted must not train")

    attempts = Attempts(never, admission, sizer, NullTracker(), "prune", elastic=False)  # type: ignore[arg-type]
    with pytest.raises(optuna.TrialPruned, match="admission timeout"):
        attempts.run(ctx)
    assert trial.user_attrs[PRUNED_REASON] == REASON_ADMISSION_TIMEOUT
    assert [r.label for r in ledger.reservations()] == [
        "a neighbour's trial"
    ]  # no waiter, no reservation left
