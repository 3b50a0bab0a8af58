"""What a `hpo tune` run did: outcome counts, the best trial and why it stopped, as lines to print."""

from __future__ import annotations

import shlex
import socket
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from hpo.config.study import StudyConfig
from hpo.device.gpu import detect, foreign_from_env
from hpo.results.best import no_complete_trial
from hpo.results.pareto import front_trials
from hpo.results.report_data import report_file
from hpo.results.report_summary import best_trial
from hpo.results.trials import count_states
from hpo.run.card import card_status
from hpo.run.reservations import ledger_path_for, usage_line
from hpo.storage.study import FINISHED_STATES, finished_count
from hpo.tracking.tracker import Tracker, runs_view_url
from hpo.trial import keys as K
from hpo.trial import outcomes

SHOWN_REASONS = (K.REASON_EARLY_STOP, K.REASON_MEMORY_ESTIMATE, K.REASON_OOM)  # always in the closing counts
REASON_LABELS = {K.REASON_WORKER_DEATHS: "killed their worker twice"}  # others: the reason, spaces for _


@dataclass
class TuneReport:
    """What a `hpo tune` run did (printed by the CLI)."""

    study: str
    storage: str
    target: int
    finished_before: int
    counts: dict[str, int] = field(default_factory=dict)
    best_value: float | None = None
    best_trial: int | None = None
    best_params: dict[str, object] = field(default_factory=dict)
    baseline: float | None = None
    metric: str = "macro_f1"
    baseline_name: str = "majority-class baseline"  # the agent's (hpo.agents)
    mlflow_uri: str | None = None
    mlflow_experiment: str | None = None  # its id: the runs view's address
    interrupted: bool = False
    signum: int | None = None  # the signal that interrupted it (SIGINT or SIGTERM)
    stopped_reason: str = ""
    poisoned: bool = False
    crash_loop: bool = False  # the launcher's crash-loop breaker stopped it (hpo.run.deaths)
    seconds: float = 0.0
    new: int | None = None  # finished by this run's processes (None: all finished since the start)
    dropped_rows: int = 0  # dirty data rows dropped (--allow-dirty-data)
    report_path: Path | None = None  # the `hpo report` page written at the end (None: --no-report)
    report_error: str = ""  # why it could not be written (the run itself still succeeded)
    front: list[int] | None = None  # a multi-objective study's Pareto front (trial numbers; hpo --objectives)

    def lines(self) -> list[str]:
        """The closing summary `hpo tune` prints."""
        c = self.counts
        more = rare_reasons(c, ", ")
        total = sum(v for k, v in c.items() if k.startswith(("complete", "pruned")))
        new = total - self.finished_before if self.new is None else self.new
        others = total - self.finished_before - new
        by_others = f", {others} by other processes" if others > 0 else ""
        out = [
            f"\nstudy {self.study}: {total} finished ({new} new{by_others}) in "
            f"{self.seconds:.0f}s - {self.stopped_reason}",
            f"  complete {c.get('complete', 0)}, pruned: early stop {c.get('pruned_early_stop', 0)}, "
            f"memory estimate {c.get('pruned_memory_estimate', 0)}, OOM {c.get('pruned_oom', 0)}"
            + more
            + f"; failed {c.get('fail', 0)}",
        ]
        if self.best_value is not None:
            out.append(
                f"best trial {self.best_trial}: val {self.metric} = {self.best_value:.4f} "
                f"({self.baseline_name} {self.baseline:.4f})"
            )
            params = self.best_params.items()
            out.append(
                "  " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params)
            )
            if self.front:  # a multi-objective study: the trade-off, not one best
                numbers = ", ".join(map(str, self.front))
                out.append(f"Pareto front: trial(s) {numbers}: hpo best --study {shlex.quote(self.study)}")
        elif sum(v for k, v in c.items() if k.startswith("pruned")) and not self.interrupted:
            detail, fix = no_complete_trial(self.study, c, self.target)
            out += [f"no trial completed: {detail}", f"  {fix}"]
        if self.dropped_rows:
            out.append(f"warning: {self.dropped_rows} dirty data row(s) dropped (--allow-dirty-data)")
        if self.mlflow_uri:
            out.append(f"MLflow: mlflow ui --backend-store-uri {shlex.quote(self.mlflow_uri)}")
            if self.mlflow_experiment is not None:
                out.append(f"  trial runs: {runs_view_url(self.mlflow_experiment)}")
        out.append(
            f"trials: hpo trials --study {shlex.quote(self.study)} --storage {shlex.quote(self.storage)}"
        )
        if self.report_error:
            out.append(f"warning: report not written: {self.report_error}")
        elif self.report_path is not None:
            out.append(f"report: {self.report_path}")
        return out


def report_path(cfg: StudyConfig) -> Path | None:
    """Where `hpo tune` writes the study's report (None with --no-report)."""
    return report_file(cfg.output_dir, cfg.study) if cfg.report else None


def _write_report(report: TuneReport, study: optuna.Study, tracker: Tracker, path: Path) -> None:
    from hpo.results.report_html import write_report  # lazy: imports plotly

    try:
        report.report_path = write_report(study, path)
    except Exception as exc:  # the report never fails a run that trained
        report.report_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        return
    log = getattr(tracker, "log_study_report", None)
    if log is not None:
        log(report.report_path)


def finish(report: TuneReport, study: optuna.Study, tracker: Tracker, path: Path | None = None) -> None:
    """Fill the outcome counts and the best trial; write the study's report to ``path`` (if given); log the
    best and the report on the study's MLflow parent run."""
    outcomes.close_stale_runs(study, tracker)  # trials failed by heartbeat, a dead worker or Ctrl-C
    report.counts = count_states(study)
    best = best_trial(study)  # by the metric, the first objective of a multi-objective study
    if best is not None:
        report.best_value, report.best_trial, report.best_params = (
            best.values[0],
            best.number,
            dict(best.params),
        )
    if len(study.directions) > 1:
        report.front = [t.number for t in front_trials(study)]
    report.mlflow_experiment = getattr(tracker, "experiment_id", None)
    if path is not None and not report.interrupted:  # a stopped run exits at once: `hpo report` later
        _write_report(report, study, tracker, path)
    end_study = getattr(tracker, "end_study", None)
    if end_study is not None:
        end_study(
            None
            if report.best_value is None
            else {
                f"best_val_{report.metric}": report.best_value,
                "best_trial": report.best_trial,
                f"majority_baseline_{report.metric}": report.baseline,
            }
        )


def finished_by(study: optuna.Study, pids: set[int], since: float) -> int:
    """Finished trials that processes ``pids`` of this host started after ``since`` (a time.time())."""
    host = socket.gethostname()
    return sum(
        1
        for t in study.get_trials(deepcopy=False, states=FINISHED_STATES)
        if t.user_attrs.get(K.PID) in pids
        and t.user_attrs.get(K.HOST) == host
        and t.datetime_start is not None
        and t.datetime_start.timestamp() >= since
    )


def rare_reasons(counts: dict[str, int], sep: str) -> str:
    """The pruning reasons past the three always shown that happened, each as ``{sep}label N``."""
    rare = (r for r in K.PRUNED_REASONS if r not in SHOWN_REASONS and counts.get(f"pruned_{r}"))
    return "".join(f"{sep}{REASON_LABELS.get(r, r.replace('_', ' '))} {counts[f'pruned_{r}']}" for r in rare)


def status_line(cfg: StudyConfig, study: optuna.Study, workers: int) -> str:
    """The launcher's periodic line: trials by outcome, its workers, the card and the memory ledger."""
    c = count_states(study)
    done = finished_count(study)
    gpu = card_status(cfg, detect(0), foreign_from_env(0))
    usage = usage_line(ledger_path_for(cfg.storage_url, cfg.output_dir))
    ledger = f" | {usage}" if usage else ""
    return (
        f"{done}/{cfg.n_trials} finished | complete {c['complete']} | pruned by estimate "
        f"{c['pruned_memory_estimate']} | OOM {c['pruned_oom']} | early stop {c['pruned_early_stop']}"
        f"{rare_reasons(c, ' | ')} | failed {c['fail']} | running {c['running']} | workers {workers}"
        f"{gpu}{ledger}"
    )
