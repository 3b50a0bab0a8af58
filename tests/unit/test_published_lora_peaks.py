"""The estimate against published, measured peaks of 7B LoRA and QLoRA fine-tunes (tests/data/
published_lora_peaks.csv, sources and settings there): within 25 % of each measured peak and never under it
by more than 15 %, and above the card where the source reports an OOM.

Nothing was fitted to these rows: the allocator is not involved (they report torch's allocated peak, compared
with the estimate's logical peak), and the two terms they needed beyond what hpo trains, a causal-LM head and
bitsandbytes < 0.43.2 keeping each 4-bit linear's input, are checked against the meta trace (the head) or
sourced to the bitsandbytes fix (the inputs) in hpo/memory/lora.py.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest

from hpo.config.catalog import LORA_TARGET_SETS, get_spec
from hpo.memory.budget import MemoryRequest
from hpo.memory.estimate import estimate
from hpo.memory.trace import trace_estimate

TABLE = Path(__file__).resolve().parents[1] / "data" / "published_lora_peaks.csv"
WITHIN, NEVER_UNDER = 0.25, 0.15
GB = 1e9  # litgpt prints max_memory_allocated / 1e9


def rows() -> list[dict[str, str]]:
    with TABLE.open() as handle:
        return list(csv.DictReader(line for line in handle if not line.startswith("#")))


def request(row: dict[str, str]) -> MemoryRequest:
    return MemoryRequest(
        batch_size=int(row["batch"]),
        max_length=int(row["seq_len"]),
        precision=row["precision"],
        optimizer=row["optimizer"],
        grad_checkpointing=row["grad_checkpointing"] == "true",
        lora_r=int(row["lora_r"]),
        lora_targets=LORA_TARGET_SETS[row["targets"]],
        lora_dropout=float(row["lora_dropout"]),
        quant=None if row["quant"] == "none" else row["quant"],
        attn_impl=row["attn"],
        head=row["head"],
        bnb_saves_inputs=row["bnb_saves_inputs"] == "true",
    )


def estimated_gb(row: dict[str, str]) -> float:
    return estimate(get_spec(row["model"]), request(row)).total_bytes / GB


MEASURED = [r for r in rows() if r["measured_gb"]]


def test_the_table_has_7b_lora_and_qlora_rows_with_their_sources() -> None:
    assert {r["quant"] for r in MEASURED} == {"none", "4bit"}
    assert all(get_spec(r["model"]).params > 6e9 for r in rows())
    text = TABLE.read_text()
    assert "resource-tables.md" in text and "config_hub/finetune/README.md" in text


@pytest.mark.parametrize(
    "row", MEASURED, ids=lambda r: f"{r['model']}-{r['quant']}-{r['batch']}x{r['seq_len']}"
)
def test_estimate_is_within_25_percent_and_never_15_percent_under(row: dict[str, str]) -> None:
    err = estimated_gb(row) / float(row["measured_gb"]) - 1
    assert -NEVER_UNDER <= err <= WITHIN, f"{err:+.1%}"


def test_the_reported_oom_is_predicted() -> None:
    (oom,) = [r for r in rows() if r["oom_gb"]]
    assert estimated_gb(oom) > float(oom["oom_gb"])


def test_the_causal_lm_head_terms_match_the_trace() -> None:
    """The head option's logits and loss against the meta trace of the tiny decoder with an LM head, where
    the vocab logits dominate the step."""
    spec = get_spec("hpo-tiny-llama")
    for precision in ("fp32", "bf16", "bf16_pure"):
        for ckpt in (False, True):
            req = MemoryRequest(
                batch_size=4, max_length=128, precision=precision, lora_r=8, grad_checkpointing=ckpt,
                lora_dropout=0.05, head="causal_lm",
            )  # fmt: skip
            est, trace = estimate(spec, req).total_bytes, trace_estimate(spec, req).total_bytes
            assert -0.01 < est / trace - 1 < 0.05, (precision, ckpt, est, trace)
            cls = replace(req, head="classifier")
            head = trace - trace_estimate(spec, cls).total_bytes  # ~12 MB of logits and loss: what is checked
            assert head > 8e6 and abs(est - estimate(spec, cls).total_bytes - head) < 0.35 * head


def test_old_bitsandbytes_inputs_are_what_the_qlora_rows_need() -> None:
    """Without the saved inputs of bitsandbytes < 0.43.2 the QLoRA rows fall further under (the term is a
    sourced mechanism, not a fit); LoRA rows do not depend on it."""
    for row in (r for r in MEASURED if r["quant"] == "4bit"):
        spec, req = get_spec(row["model"]), request(row)
        without = estimate(spec, replace(req, bnb_saves_inputs=False)).total_bytes
        assert without < estimate(spec, req).total_bytes
