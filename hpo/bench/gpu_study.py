"""The GPU study (``scripts/gpu_study.py``): real ``hpo tune`` runs of one trial mix under several schedules.

Schedules, each a fresh study with the mix of ``configs/bench/gpu-study.yaml`` enqueued in the same order and
``window_s`` of wall time (trials still running then are stopped and not counted):
``hpo`` (``--par N``, ledger admission, ``--on-oom prune``, the forced OOM first), ``hpo-shrink`` (the same
with ``--on-oom shrink``), ``fixed-par-K`` (``--admission none --par K``: the old fixed-PAR way) and
``cpu-fallback`` (one forced OOM under ``--on-oom cpu``). On a CUDA card a ballast (``hpo.bench.ballast``)
leaves 24 GiB free; without CUDA the card is simulated and nothing is measured.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from hpo.bench.study_models import local_models
from hpo.bench.study_params import enqueue_params
from hpo.config.study import StudyConfig, load_config
from hpo.config.yaml_file import read_yaml
from hpo.paths import CONFIG_DIR
from hpo.units import GIB, parse_memory

MIX_FILE = CONFIG_DIR / "bench" / "gpu-study.yaml"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
STOP_GRACE_S = 60.0


@dataclass(frozen=True)
class Schedule:
    """One ``hpo tune`` run of the study."""

    name: str
    par: int
    admission: str = "ledger"
    on_oom: str = "prune"
    forced: bool = False  # the forced-OOM trial runs first (trial 0)
    mix: bool = True  # False: the forced trial only (cpu fallback)


@dataclass
class Plan:
    """What to run: the study YAML, the mix and its special trials, the schedules' sizes and windows."""

    simulated: bool
    study_yaml: Path
    par: int
    fixed_par: list[int]
    window_s: float
    cycles: int
    mix: list[dict[str, Any]]
    forced_oom: dict[str, Any]
    cpu_fallback: dict[str, Any]

    @classmethod
    def load(cls, simulated: bool, path: Path = MIX_FILE) -> Plan:
        d = dict(read_yaml(path)["simulate" if simulated else "card"])
        d["study_yaml"] = CONFIG_DIR / "studies" / str(d.pop("study"))
        return cls(simulated=simulated, **d)

    def schedules(self) -> list[Schedule]:
        fixed = [Schedule(f"fixed-par-{k}", k, admission="none") for k in self.fixed_par]
        return [
            Schedule("hpo", self.par, forced=True),
            Schedule("hpo-shrink", self.par, on_oom="shrink"),
            *fixed,
            Schedule("cpu-fallback", 2, on_oom="cpu", forced=True, mix=False),
        ]


def mlflow_available() -> bool:
    return importlib.util.find_spec("mlflow") is not None


def study_config(plan: Plan, out: Path, models: dict[str, str], s: Schedule) -> StudyConfig:
    """The schedule's study: its own output dir, storage and ledger under ``out/<schedule>/``."""
    home = out / s.name
    over = {"study": f"gpu-study-{s.name}", "output_dir": home, "par": s.par, "on_oom": s.on_oom}
    over |= {"admission": s.admission, "models": list(models.values())}
    over["storage"] = f"sqlite:///{(home / 'gpu-study.db').resolve()}"
    if plan.simulated:
        over["device"] = "cpu"
    return load_config(plan.study_yaml, over)


def fault_env(plan: Plan, special: dict[str, Any], trial: int) -> dict[str, str]:
    """The environment that forces trial ``trial`` to run out of memory: a too-small allocator cap on a real
    card (test hook ``HPO_TEST_FORCE_CAP``), an injected OOM in simulation (``HPO_INJECT_OOM``)."""
    if plan.simulated:
        return {"HPO_INJECT_OOM": f"epoch=0,step=0,trials={trial}"}
    return {"HPO_TEST_FORCE_CAP": f"trials={trial},fraction={special.get('cap_fraction', 0.4)}"}


def enqueue(cfg: StudyConfig, plan: Plan, models: dict[str, str], s: Schedule) -> tuple[int, int | None]:
    """Create the schedule's study and enqueue its trials; (how many, the forced trial's number)."""
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=cfg.study, storage=cfg.storage_url, direction="maximize")
    special = plan.forced_oom if s.on_oom != "cpu" else plan.cpu_fallback
    todo = ([special] if s.forced else []) + (plan.mix * plan.cycles if s.mix else [])
    for entry in todo:
        fields = {k: v for k, v in entry.items() if k != "cap_fraction"}
        study.enqueue_trial(enqueue_params(cfg, fields | {"model": models[fields["model"]]}))
    return len(todo), 0 if s.forced else None


def run_schedule(plan: Plan, out: Path, models: dict[str, str], s: Schedule, mlflow: bool) -> dict[str, Any]:
    """One ``hpo tune`` subprocess for ``plan.window_s`` (stopped by SIGTERM past it); its trials and wall."""
    cfg = study_config(plan, out, models, s)
    n, forced = enqueue(cfg, plan, models, s)
    cmd = [sys.executable, "-m", "hpo", "tune", "--config", str(plan.study_yaml), "--study", cfg.study]
    cmd += ["--storage", cfg.storage_url, "--output-dir", str(cfg.output_dir), "--par", str(s.par)]
    cmd += ["--on-oom", s.on_oom]
    cmd += ["--admission", s.admission, "--n-trials", str(n), "--no-report", "--models", ",".join(cfg.models)]
    cmd += ["--device", "cpu"] if plan.simulated else []
    tracking = f"sqlite:///{(cfg.output_dir / 'mlflow.db').resolve()}"
    cmd += ["--mlflow-uri", tracking] if mlflow else ["--no-mlflow"]
    env = dict(os.environ) | OFFLINE
    for var in ("HPO_INJECT_OOM", "HPO_INJECT_FATAL", "HPO_INJECT_KILL", "HPO_TEST_FORCE_CAP"):
        env.pop(var, None)
    if forced is not None:
        env |= fault_env(plan, plan.forced_oom if s.on_oom != "cpu" else plan.cpu_fallback, forced)
    log = out / f"{s.name}.log"
    started = time.monotonic()
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env)
        window = plan.window_s if s.mix else max(plan.window_s, 120.0)
        try:
            proc.wait(timeout=window)
            wall = time.monotonic() - started
        except subprocess.TimeoutExpired:
            wall = time.monotonic() - started
            proc.send_signal(signal.SIGTERM)  # the launcher stops its workers (their trials fail)
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    study = optuna.load_study(study_name=cfg.study, storage=cfg.storage_url)
    return {
        "trials": study.get_trials(deepcopy=False),
        "wall_s": wall,
        "forced": forced,
        "rc": proc.returncode,
        "log": str(log),
    }


def fresh(out: Path, schedules: list[Schedule]) -> None:
    """Remove what an earlier study left in ``out`` (the schedules' folders, CSVs and logs; models stay)."""
    out.mkdir(parents=True, exist_ok=True)
    for s in schedules:
        shutil.rmtree(out / s.name, ignore_errors=True)
    for pattern in ("*.csv", "*.log"):
        for path in out.glob(pattern):
            path.unlink()


def run_all(plan: Plan, out: Path, mlflow: bool) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """Every schedule in turn, beside a ballast on a real card; (results by schedule, the ballast's info)."""
    fresh(out, plan.schedules())
    base = load_config(plan.study_yaml)
    models = local_models(list(base.models), out / "models") if not plan.simulated else {}
    models = models or {m: m for m in base.models}
    ballast: dict[str, Any] | None = None
    results: dict[str, dict[str, Any]] = {}
    if plan.simulated:  # nothing is measured: the schedules run side by side (each its own storage, ledger)
        with ThreadPoolExecutor(max_workers=len(plan.schedules())) as pool:
            runs = {s.name: pool.submit(run_schedule, plan, out, models, s, mlflow) for s in plan.schedules()}
        return {name: run.result() for name, run in runs.items()}, ballast
    from hpo.bench.ballast import hold  # lazy: only with CUDA

    keep = parse_memory(base.gpu_memory or "24GB")
    with hold(keep) as info:
        if info is not None:
            ballast = {"pid": info.pid, "held_gb": round(info.held_bytes / GIB, 2)}
            ballast |= {"free_after_gb": round(info.free_after_bytes / GIB, 2)}
            ballast |= {"total_gb": round(info.total_bytes / GIB, 2)}
        for s in plan.schedules():
            results[s.name] = run_schedule(plan, out, models, s, mlflow)
    return results, ballast
