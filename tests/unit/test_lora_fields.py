"""LoRA dropout, target-module sets and 4/8-bit bases: what the estimate, the trace and real peft agree on,
where the space proposes them, and the one-line refusal where quantisation cannot run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from hpo.commands import app
from hpo.config.catalog import LORA_TARGET_SETS, get_spec
from hpo.config.study import SpaceConfig, TrialConfig
from hpo.device.gpu import load_profile
from hpo.errors import ConfigError
from hpo.memory.budget import MemoryRequest
from hpo.memory.estimate import estimate, param_counts
from hpo.memory.trace import trace_estimate
from hpo.memory.trace_model import model_from_config
from hpo.run.fingerprint import diff
from hpo.train.model import build_model
from hpo.trial.sizing import memory_request
from hpo.trial.space import SpaceContext, quant_choices, sample, validate

LLAMA = get_spec("hpo-tiny-llama")
LLAMA_7B = get_spec("Llama-2-7B")
TARGET_SETS = sorted(LORA_TARGET_SETS)


def lora_request(targets: str, dropout: float, precision: str = "fp32", ckpt: bool = False) -> MemoryRequest:
    return MemoryRequest(
        batch_size=2,
        max_length=256,
        precision=precision,
        lora_r=16,
        lora_targets=LORA_TARGET_SETS[targets],
        lora_dropout=dropout,
        grad_checkpointing=ckpt,
    )


@pytest.mark.parametrize("targets", TARGET_SETS)
def test_trainable_counts_of_estimate_and_trace_are_what_peft_creates(targets: str) -> None:
    model = build_model(
        LLAMA, num_labels=2, dropout=0.0, grad_checkpointing=False, frozen_layers=0, seed=0, lora_r=8,
        lora_dropout=0.1, lora_targets=targets,
    )  # fmt: skip
    peft_adapters = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and "lora_" in n)
    peft_head = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n)
    req = MemoryRequest(8, 64, lora_r=8, lora_targets=LORA_TARGET_SETS[targets], lora_dropout=0.1)
    counts = param_counts(LLAMA, req)
    assert (counts.adapters, counts.trainable) == (peft_adapters, peft_head)
    traced = model_from_config(LLAMA, req, device="cpu")
    trace_adapters = sum(p.numel() for n, p in traced.named_parameters() if p.requires_grad and "lora_" in n)
    assert trace_adapters == peft_adapters
    wrapped = {n.rsplit(".", 2)[0] for n, _ in model.named_parameters() if "lora_A" in n}
    assert len(wrapped) == LLAMA.num_layers * len(LORA_TARGET_SETS[targets])


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_peft_applies_dropout_only_when_positive(dropout: float) -> None:
    model = build_model(
        LLAMA, num_labels=2, dropout=0.0, grad_checkpointing=False, frozen_layers=0, seed=0, lora_r=4,
        lora_dropout=dropout,
    )  # fmt: skip
    drops = [m for n, m in model.named_modules() if n.endswith("lora_dropout.default")]
    assert drops and all(type(m).__name__ == ("Dropout" if dropout else "Identity") for m in drops)
    assert all(getattr(m, "p", dropout) == dropout for m in drops)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "bf16_pure"])
@pytest.mark.parametrize("targets", TARGET_SETS)
@pytest.mark.parametrize("ckpt", [False, True])
def test_estimate_matches_the_trace_with_lora_dropout(precision: str, targets: str, ckpt: bool) -> None:
    """The analytic dropout term (masks, dropped copies) against the meta trace of the tiny decoder."""
    for dropout in (0.0, 0.1):
        req = lora_request(targets, dropout, precision, ckpt)
        est, trace = estimate(LLAMA, req).total_bytes, trace_estimate(LLAMA, req).total_bytes
        assert abs(est / trace - 1) < 0.02, (dropout, est, trace)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("targets", ["q_v", "all_linear"])
def test_dropout_term_matches_the_trace_of_a_7b(precision: str, targets: str) -> None:
    """At 7B the dropout's share is large enough to check on its own: analytic and trace deltas agree."""
    off, on = lora_request(targets, 0.0, precision), lora_request(targets, 0.1, precision)
    est = estimate(LLAMA_7B, on).total_bytes - estimate(LLAMA_7B, off).total_bytes
    trace = trace_estimate(LLAMA_7B, on).total_bytes - trace_estimate(LLAMA_7B, off).total_bytes
    assert trace > 0 and abs(est / trace - 1) < 0.05, (est, trace)


def test_trial_fields_reach_the_memory_request() -> None:
    cfg = TrialConfig(
        model="hpo-tiny-llama", learning_rate=1e-4, lora_r=8, lora_dropout=0.05, lora_targets="qkvo",
        quant="4bit", precision="bf16",
    )  # fmt: skip
    req = memory_request(cfg, num_labels=2)
    assert (req.lora_dropout, req.lora_targets, req.quant) == (0.05, LORA_TARGET_SETS["qkvo"], "4bit")
    assert memory_request(cfg.model_copy(update={"quant": "none"}), 2).quant is None


def test_trial_config_refuses_quant_without_lora_or_in_bf16_pure() -> None:
    for bad in ({"lora_r": 0}, {"lora_r": 8, "precision": "bf16_pure"}):
        with pytest.raises(ValueError, match="4/8-bit"):
            TrialConfig(model="hpo-tiny-llama", learning_rate=1e-4, quant="4bit", **bad)


def sampled(ctx: SpaceContext, n: int = 40) -> list[tuple[TrialConfig, dict[str, object]]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append((sample(trial, ctx), dict(trial.params)))
        study.tell(trial, 0.5)
    return out


def test_decoders_sample_lora_dropout_and_targets_encoders_do_not() -> None:
    ctx = SpaceContext(models=("hpo-tiny-llama", "hpo-tiny-bert"), space=SpaceConfig(), on_cuda=False)
    rows = sampled(ctx)
    dec = [(c, p) for c, p in rows if c.model == "hpo-tiny-llama"]
    enc = [(c, p) for c, p in rows if c.model == "hpo-tiny-bert"]
    assert dec and enc
    assert {c.lora_targets for c, _ in dec} == {"q_v", "all_linear"}
    assert all(0.0 <= c.lora_dropout <= 0.1 and "lora_dropout" in p for c, p in dec)
    assert all("lora_dropout" not in p and "lora_targets" not in p and c.lora_r == 0 for c, p in enc)


def test_quant_is_never_proposed_on_cpu_or_without_bitsandbytes() -> None:
    seven_b = SpaceConfig(batch_size=[1, 2], max_length=[128])
    for on_cuda, eight_bit in ((False, False), (True, False)):
        ctx = SpaceContext(
            models=("Llama-2-7B",), space=seven_b, on_cuda=on_cuda, profile=load_profile("24GB"),
            eight_bit=eight_bit,
        )  # fmt: skip
        validate(ctx)  # the default space allows none: nothing to refuse
        rows = sampled(ctx, 15)
        assert all(c.quant == "none" and not any(k.startswith("quant") for k in p) for c, p in rows)


def test_quant_is_sampled_where_the_tier_allows_it() -> None:
    seven_b = SpaceConfig(batch_size=[1, 2], max_length=[128], precision=["fp16", "bf16", "bf16_pure"])
    ctx = SpaceContext(
        models=("Llama-2-7B",), space=seven_b, on_cuda=True, profile=load_profile("24GB"), eight_bit=True
    )
    rows = sampled(ctx)
    assert {c.quant for c, _ in rows} == {"none", "4bit", "8bit"}
    assert all(c.precision != "bf16_pure" for c, _ in rows if c.quant != "none")
    assert any(c.precision == "bf16_pure" for c, _ in rows)  # still sampled with a 16-bit base
    assert any("precision:fp16/bf16" in p for _, p in rows)  # narrowed choices under their own name
    # the tiny decoder's tier (small models) and the 80 GB profile allow no quantisation
    assert quant_choices(LLAMA, ctx) == ["none"]
    assert quant_choices(LLAMA_7B, replace(ctx, profile=load_profile("80GB"))) == ["none"]


def test_forced_quant_where_it_cannot_run_is_a_config_error() -> None:
    forced = SpaceConfig(quant=["4bit"])
    cpu = SpaceContext(models=("hpo-tiny-llama",), space=forced, on_cuda=False)
    with pytest.raises(ConfigError, match="need a CUDA device") as err:
        validate(cpu)
    assert "hpo[qlora]" in err.value.fix
    no_bnb = SpaceContext(
        models=("Llama-2-7B",), space=forced, on_cuda=True, profile=load_profile("24GB"), eight_bit=False
    )
    with pytest.raises(ConfigError, match="bitsandbytes"):
        validate(no_bnb)
    small_tier = SpaceContext(
        models=("hpo-tiny-llama",), space=forced, on_cuda=True, profile=load_profile("24GB"), eight_bit=True
    )
    with pytest.raises(ConfigError, match="allows no 4bit"):
        validate(small_tier)


def test_tune_with_forced_quant_on_cpu_exits_2_with_one_line(tmp_path: Path) -> None:
    study = tmp_path / "qlora.yaml"
    study.write_text("study: q\nmodels: [hpo-tiny-llama]\ndevice: cpu\nspace:\n  quant: [4bit]\n")
    args = ["tune", "--config", str(study), "--output-dir", str(tmp_path / "runs"), "--no-mlflow"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "need a CUDA device" in errors[0], res.output
    assert "Traceback" not in res.output and "hpo[qlora]" in res.output


def test_new_space_fields_at_their_defaults_are_no_change_on_resume() -> None:
    new = SpaceConfig().model_dump(mode="json")
    old = {k: v for k, v in new.items() if k not in ("lora_dropout", "lora_targets", "quant")}
    assert diff({"space": old}, {"space": new}) == []
    (change,) = diff({"space": old}, {"space": {**new, "quant": ["4bit"]}})
    assert change.field == "space.quant" and not change.compatible


def test_estimate_cli_takes_lora_dropout_and_target_sets() -> None:
    base = ["estimate", "--model", "Llama-2-7B", "--batch-size", "1", "--max-length", "512", "--json"]
    base += ["--lora-r", "16", "--precision", "bf16", "--eval-batch-size", "0", "--gpu-memory", "80GB"]
    runner = CliRunner()
    plain = runner.invoke(app, base)
    dropped = runner.invoke(app, [*base, "--lora-dropout", "0.1", "--lora-targets", "all_linear"])
    quant = runner.invoke(app, [*base, "--quant", "4bit", "--lora-targets", "q_v"])
    assert plain.exit_code == dropped.exit_code == quant.exit_code == 0, dropped.output + quant.output
    assert '"lora_dropout": 0.1' in dropped.output and '"gate_proj"' in dropped.output
    total = lambda out: float(out.split('"total_gb": ')[1].split(",")[0])  # noqa: E731
    assert total(dropped.output) > total(plain.output) > total(quant.output)
    bad = runner.invoke(app, [*base, "--lora-dropout", "1.5"])
    assert bad.exit_code == 2 and "lora dropout" in bad.output


def test_quantised_build_is_refused_on_cpu_and_follows_qlora_where_it_runs() -> None:
    from hpo.train.quant import bnb_config

    with pytest.raises(ConfigError, match="need a CUDA device"):
        build_model(
            LLAMA, num_labels=2, dropout=0.0, grad_checkpointing=False, frozen_layers=0, seed=0, lora_r=8,
            quant="4bit",
        )  # fmt: skip
    nf4 = bnb_config("4bit")
    assert (nf4.load_in_4bit, nf4.bnb_4bit_quant_type, nf4.bnb_4bit_use_double_quant) == (True, "nf4", True)
    assert str(nf4.bnb_4bit_compute_dtype) == "torch.bfloat16" and bnb_config("8bit").load_in_8bit


def test_gpu_profile_tiers_name_their_quantisations(tmp_path: Path) -> None:
    assert load_profile("24GB").bounds(LLAMA_7B.params).quant == ("none", "4bit", "8bit")
    assert load_profile("24GB").bounds(LLAMA.params).quant == ("none",)
    from hpo.device.gpu import read_profile

    text = (Path(__file__).resolve().parents[2] / "configs/gpus/24gb.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("quant: [none, 4bit, 8bit]", "quant: [3bit]"))
    with pytest.raises(ConfigError, match="quant"):
        read_profile(bad)


def test_estimate_cli_reproduces_a_published_qlora_row() -> None:
    """litgpt's Llama-2-7B QLoRA (nf4, r=8 on q/v, 1 x 1304 tokens, bitsandbytes 0.41): 14.14 GB allocated
    (tests/data/published_lora_peaks.csv)."""
    args = ["estimate", "--model", "Llama-2-7B", "--batch-size", "1", "--max-length", "1304", "--json"]
    args += ["--precision", "bf16_pure", "--lora-r", "8", "--lora-dropout", "0.05", "--quant", "4bit"]
    args += ["--attn-impl", "flash", "--head", "causal_lm", "--bnb-saves-inputs", "--eval-batch-size", "0"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    gb = float(res.output.split('"total_gb": ')[1].split(",")[0]) * 2**30 / 1e9
    assert abs(gb / 14.14 - 1) < 0.05


def test_oom_policies_with_a_quantised_base() -> None:
    """shrink keeps the 4-bit base (same model, smaller micro-batch); cpu prunes: no CPU form trains it."""
    from hpo.trial.attempts import next_attempt
    from hpo.trial.elastic import lighter_forms

    cfg = TrialConfig(
        model="hpo-tiny-llama", learning_rate=1e-4, lora_r=8, quant="4bit", precision="bf16", batch_size=8
    )
    smaller = next_attempt("shrink", cfg, LLAMA, on_gpu=True)
    assert smaller is not None and smaller[0].quant == "4bit" and smaller[0].batch_size < 8
    assert next_attempt("cpu", cfg, LLAMA, on_gpu=True) is None
    assert next_attempt("cpu", cfg.model_copy(update={"quant": "none"}), LLAMA, on_gpu=True) is not None
    assert all(f.quant == "4bit" and f.lora_dropout == cfg.lora_dropout for f in lighter_forms(cfg))


def test_a_4bit_base_under_autocast_keeps_fp32_mlp_activations() -> None:
    """bitsandbytes' Linear4bit returns its input's dtype (fp32 residual and norms after
    prepare_model_for_kbit_training), so gate/up outputs and the activation are saved in fp32 (source-derived,
    not measured: no GPU run of hpo's QLoRA path yet)."""
    req = MemoryRequest(batch_size=1, max_length=512, precision="bf16", lora_r=16)
    act = lambda r: estimate(LLAMA_7B, r).components["activations"]  # noqa: E731
    extra = act(replace(req, quant="4bit")) - act(req)
    assert extra == LLAMA_7B.num_layers * 512 * 3 * 2 * LLAMA_7B.intermediate_size
