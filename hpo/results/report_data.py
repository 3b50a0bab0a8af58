"""What `hpo report` shows, read from a study's trials (pure data: no plotting, unit-testable).

Only what the objective records (``hpo.trial.keys``) is shown: a measured peak is taken from the trial's user
attrs where training measured one and is None otherwise, never filled in from the estimate. What a study does
not record (the card size in studies from before it was recorded, the GPU of each trial, the ledger file's own
history) is listed in ``ReportData.not_recorded`` so the report can say so.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.config.study import DEFAULT_OUTPUT_DIR
from hpo.storage.study import CONFIG_ATTR
from hpo.trial import keys as K
from hpo.units import parse_memory

OUTCOMES: tuple[str, ...] = (
    "complete",
    "pruned: early_stop",
    "pruned: memory_estimate",
    "pruned: oom",
    "pruned: admission_timeout",
    "pruned: worker_deaths",
    "failed",
    "running",
)


def report_file(output_dir: Path | None, study: str) -> Path:
    """Where `hpo tune` and `hpo report` write a study's report: ``<output-dir>/<study>-report.html``."""
    return (output_dir or DEFAULT_OUTPUT_DIR) / f"{study}-report.html"


def outcome(t: FrozenTrial) -> str:
    """The trial's outcome as the report colours it (pruned ones by their recorded reason)."""
    if t.state == TrialState.COMPLETE:
        return "complete"
    if t.state == TrialState.PRUNED:
        return f"pruned: {t.user_attrs.get(K.PRUNED_REASON, K.REASON_EARLY_STOP)}"
    if t.state == TrialState.FAIL:
        return "failed"
    return t.state.name.lower()


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class MemoryPoint:
    """One trial on the memory map: its estimate and the peaks measured while it trained (None: not
    measured, e.g. pruned before training or trained on CPU)."""

    number: int
    outcome: str
    estimated_gb: float | None  # of the form that ran (a lighter elastic form has its own estimate)
    allocated_gb: float | None
    reserved_gb: float | None
    device_gb: float | None  # reserved + CUDA context, or NVML when larger
    nvml_gb: float | None
    config: dict[str, Any]
    ran_as: str = ""

    @property
    def error(self) -> float | None:
        """Measured device peak / estimate - 1 (None without both)."""
        if self.device_gb is None or not self.estimated_gb:
            return None
        return self.device_gb / self.estimated_gb - 1.0


def memory_point(t: FrozenTrial) -> MemoryPoint:
    a = t.user_attrs
    estimate = _float(a.get(K.RUN_ESTIMATED_PEAK_GB)) or _float(a.get(K.ESTIMATED_PEAK_GB))
    config = a.get(K.FINAL_CONFIG) or a.get(K.RUN_CONFIG) or a.get(K.TRIAL_CONFIG) or dict(t.params)
    return MemoryPoint(
        number=t.number,
        outcome=outcome(t),
        estimated_gb=estimate,
        allocated_gb=_float(a.get(K.MEASURED_PEAK_GB)),
        reserved_gb=_float(a.get(K.MEASURED_RESERVED_GB)),
        device_gb=_float(a.get(K.MEASURED_DEVICE_GB)),
        nvml_gb=_float(a.get(K.NVML_PROCESS_GB)),
        config=dict(config),
        ran_as=str(a.get(K.ELASTIC_FORM, "")),
    )


@dataclass(frozen=True)
class Span:
    """One trial on the timeline (seconds since the study's first trial started)."""

    number: int
    outcome: str
    worker: str  # "w<slot>.<generation>" with --par, "serial" without
    start_s: float
    end_s: float | None  # None: still running
    wait_s: float | None  # waited for GPU memory before admission (--par)
    admitted_s: float | None
    released_s: float | None
    reserved_gb: float | None  # the device estimate the GPU ledger held (None: trained on CPU, held none)
    host_gb: float | None  # the host-RAM estimate the host ledger held (--par)
    ran_as: str
    oom: bool


def _spans(trials: list[FrozenTrial], now: float) -> tuple[list[Span], float]:
    """The started trials as spans, and when the first one started (``now`` when none did)."""
    started = [t for t in trials if t.datetime_start is not None]
    if not started:
        return [], now
    t0 = min(t.datetime_start.timestamp() for t in started if t.datetime_start is not None)
    out = []
    for t in started:
        a = t.user_attrs
        assert t.datetime_start is not None
        end = t.datetime_complete.timestamp() - t0 if t.datetime_complete is not None else None
        admitted, released = _float(a.get(K.ADMITTED_AT)), _float(a.get(K.RELEASED_AT))
        if admitted is not None and released is None and t.state != TrialState.RUNNING:
            released = t.datetime_complete.timestamp() if t.datetime_complete is not None else now
        out.append(
            Span(
                number=t.number,
                outcome=outcome(t),
                worker=str(a.get(K.WORKER, "serial")),
                start_s=t.datetime_start.timestamp() - t0,
                end_s=end,
                wait_s=_float(a.get(K.ADMISSION_WAIT_S)),
                admitted_s=None if admitted is None else admitted - t0,
                released_s=None if released is None else released - t0,
                reserved_gb=_device_reservation(a),
                host_gb=_float(a.get(K.ESTIMATED_HOST_GB)),
                ran_as=str(a.get(K.ELASTIC_FORM, "")),
                oom=a.get(K.OOM) is True or bool(a.get(K.OOM_ATTEMPTS)),
            )
        )
    return sorted(out, key=lambda s: s.number), t0


def _device_reservation(a: dict[str, Any]) -> float | None:
    """What the GPU ledger held for a trial: its (lighter form's) estimate, only when it trained on a GPU."""
    if a.get(K.DEVICE) != "cuda":
        return None
    return _float(a.get(K.RUN_ESTIMATED_PEAK_GB)) or _float(a.get(K.ESTIMATED_PEAK_GB))


def reserved_over_time(spans: list[Span], host: bool = False) -> list[tuple[float, float]]:
    """(seconds, GB held) steps: the sum of admitted trials' device estimates (``host``: host-RAM estimates)
    between admission and release."""
    events: list[tuple[float, float]] = []
    for s in spans:
        held = s.host_gb if host else s.reserved_gb
        if s.admitted_s is None or held is None:
            continue
        events.append((s.admitted_s, held))
        if s.released_s is not None:
            events.append((s.released_s, -held))
    held, out = 0.0, []
    for when, delta in sorted(events):
        held += delta
        out.append((when, round(max(held, 0.0), 6)))
    return out


def recycled_workers(spans: list[Span]) -> list[str]:
    """Workers that replaced an earlier one in the same slot (generation > 0): recycled or restarted."""
    return sorted({s.worker for s in spans if s.worker.startswith("w") and not s.worker.endswith(".0")})


@dataclass
class ReportData:
    """Everything the report draws, for one study at one moment (a running study shows what is there)."""

    study: str
    n_trials: int
    direction: str
    outcomes: dict[str, int]
    points: list[MemoryPoint]
    spans: list[Span]
    reserved: list[tuple[float, float]]  # GPU ledger (device estimates of trials that trained on a GPU)
    host_reserved: list[tuple[float, float]]  # host ledger (host-RAM estimates), --par only
    now_s: float  # when the report was built, in seconds since the first trial started
    card_gb: float | None
    headroom_gb: float | None
    recycled: list[str]
    not_recorded: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[float]:
        """Estimator errors (measured device peak / estimate - 1) of the trials that measured one."""
        return [e for e in (p.error for p in self.points) if e is not None]


def _card(study: optuna.Study, trials: list[FrozenTrial]) -> tuple[float | None, float | None]:
    """The card and headroom the latest trial was sized against, else the study's --gpu-memory."""
    for t in sorted(trials, key=lambda t: -t.number):
        card = _float(t.user_attrs.get(K.GPU_GB))
        if card is not None:
            return card, _float(t.user_attrs.get(K.HEADROOM_GB))
    cfg = study.user_attrs.get(CONFIG_ATTR) or {}
    given = cfg.get("gpu_memory")
    if not given:
        return None, None
    card = parse_memory(str(given)) / 1024**3
    headroom = _float(cfg.get("headroom_gb"))
    if headroom is None:
        from hpo.device.gpu import headroom_bytes, load_profile  # the profile's default for that card

        headroom = headroom_bytes(load_profile(str(given))) / 1024**3
    return card, headroom


def build(study: optuna.Study, now: float) -> ReportData:
    """The report's data from the study's trials as they are now (``now``: time.time(), closes the
    reservation of a trial that ended without recording its release)."""
    trials = study.get_trials(deepcopy=False)
    points = [memory_point(t) for t in trials if t.state != TrialState.WAITING]
    spans, t0 = _spans(trials, now)
    card, headroom = _card(study, trials)
    missing = []
    if card is None:
        missing.append("card size (no trial recorded one and the study did not set --gpu-memory)")
    missing.append("which GPU each trial ran on (hpo records the device type only)")
    if not any(p.device_gb is not None for p in points):
        missing.append("measured peaks (no trial trained on a GPU)")
    if not any(s.admitted_s is not None for s in spans):
        missing.append("memory reservations (no memory ledger: the study ran without --par)")
    else:
        missing.append(
            "the ledger file's own history: reservations are rebuilt from each trial's admission and release "
            "(each worker's CUDA context, which the GPU ledger also holds, is not recorded per trial)"
        )
    return ReportData(
        study=study.study_name,
        n_trials=len(trials),
        direction=", ".join(d.name.lower() for d in study.directions),
        outcomes=dict(Counter(p.outcome for p in points)),
        points=points,
        spans=spans,
        reserved=reserved_over_time(spans),
        host_reserved=reserved_over_time(spans, host=True),
        now_s=now - t0,
        card_gb=card,
        headroom_gb=headroom,
        recycled=recycled_workers(spans),
        not_recorded=missing,
    )
