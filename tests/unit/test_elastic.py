"""Elastic forms: lighter equivalent forms, their estimates, and the ledger taking them after a wait."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from hpo.config.catalog import get_spec
from hpo.memory.estimate import estimate
from hpo.run.ledger import Ledger, LedgerTimeout
from hpo.trial.elastic import describe, lighter_forms
from hpo.trial.sizing import memory_request
from tests.support import BASE


def shape(cfg: object) -> tuple[int, int, bool]:
    return cfg.batch_size, cfg.grad_accum, cfg.grad_checkpointing  # type: ignore[attr-defined]


def test_forms_keep_the_effective_batch_cheapest_first() -> None:
    forms = lighter_forms(BASE)  # 16 x 1, no checkpointing
    assert [shape(f) for f in forms] == [
        (16, 1, True),
        (8, 2, False),
        (8, 2, True),
        (4, 4, False),
        (4, 4, True),
    ]
    assert all(f.effective_batch == BASE.effective_batch for f in forms)
    assert all(
        f.model_dump(exclude={"batch_size", "grad_accum", "grad_checkpointing"})
        == BASE.model_dump(exclude={"batch_size", "grad_accum", "grad_checkpointing"})
        for f in forms
    )
    odd = BASE.model_copy(update={"batch_size": 6, "grad_checkpointing": True})
    assert [shape(f) for f in lighter_forms(odd)] == [(3, 2, True)]  # 3 cannot be halved again
    assert lighter_forms(BASE.model_copy(update={"batch_size": 1, "grad_checkpointing": True})) == []
    assert describe(BASE, forms[2]) == "micro-batch 8x2 accumulation + gradient checkpointing"
    assert describe(BASE, forms[0]) == "gradient checkpointing" and describe(BASE, BASE) == ""


@pytest.mark.parametrize("model", ["bert-base-uncased", "roberta-large", "deberta-v3-base"])
def test_every_form_needs_less_memory_than_the_sampled_one(model: str) -> None:
    sampled = BASE.model_copy(update={"model": model, "batch_size": 32, "max_length": 256})
    need = estimate(get_spec(model), memory_request(sampled, 2)).device_total_bytes
    for form in lighter_forms(sampled):
        assert estimate(get_spec(model), memory_request(form, 2)).device_total_bytes < need, shape(form)


def test_ledger_takes_a_lighter_form_only_after_waiting(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.json", "GPU-e", 100, poll_interval=0.01)
    neighbour = ledger.reserve(50)
    with pytest.raises(LedgerTimeout):  # 60 does not fit and the lighter 40 is not eligible yet
        ledger.reserve(60, lighter=[45, 40], lighter_after=30, timeout=0.2)
    start = time.monotonic()
    res = ledger.reserve(60, lighter=[55, 45, 40], lighter_after=0.2, timeout=5)
    assert 0.15 <= time.monotonic() - start < 3
    assert (res.form, res.bytes) == (2, 45)  # the first form that fits, in the caller's order
    ledger.release(res)
    ledger.release(neighbour)
    assert ledger.reserve(60, lighter=[40], lighter_after=0).form == 0  # the sampled form when it fits


def test_waiter_advertises_the_least_it_can_run_with(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.json", "GPU-e", 100, poll_interval=0.01)
    neighbour = ledger.reserve(70)
    got: list[int] = []

    def wait() -> None:
        got.append(ledger.reserve(80, lighter=[40], lighter_after=0.5, timeout=5).form)

    def advertised() -> list[int]:
        return [w["bytes"] for w in json.loads(ledger.path.read_text())["GPU-e"]["waiting"]]

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.25)
    assert advertised() == [80]  # the sampled form only, for now
    time.sleep(0.6)
    assert advertised() == [40]  # the lighter form is eligible: anti-starvation keeps only that free
    ledger.release(neighbour)
    waiter.join(5)
    assert got == [0] and advertised() == []  # once the card is free the sampled form fits


def test_form_that_never_fits_beside_the_contexts_is_skipped_at_once(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.json", "GPU-e", 100, poll_interval=0.01)
    ledger.hold_process(30)
    assert ledger.reserve(80, lighter=[60], lighter_after=3600, timeout=2).form == 1
