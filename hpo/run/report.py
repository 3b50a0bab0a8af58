"""What a `hpo tune` run did: outcome counts, the best trial and why it stopped, as lines to print."""

from __future__ import annotations

from dataclasses import dataclass, field

import optuna

from hpo.results.trials import count_states
from hpo.tracking import Tracker


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
    mlflow_uri: str | None = None
    interrupted: bool = False
    signum: int | None = None  # the signal that interrupted it (SIGINT or SIGTERM)
    stopped_reason: str = ""
    poisoned: bool = False
    crash_loop: bool = False  # the launcher's crash-loop breaker stopped it (hpo.run.deaths)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """The closing summary `hpo tune` prints."""
        c = self.counts
        deaths = c.get("pruned_worker_deaths", 0)
        new = sum(v for k, v in c.items() if k.startswith(("complete", "pruned"))) - self.finished_before
        out = [
            f"\nstudy {self.study}: {self.finished_before + new} finished ({new} new) in "
            f"{self.seconds:.0f}s - {self.stopped_reason}",
            f"  complete {c.get('complete', 0)}, pruned: early stop {c.get('pruned_early_stop', 0)}, "
            f"memory estimate {c.get('pruned_memory_estimate', 0)}, OOM {c.get('pruned_oom', 0)}"
            + (f", killed their worker twice {deaths}" if deaths else "")
            + f"; failed {c.get('fail', 0)}",
        ]
        if self.best_value is not None:
            out.append(
                f"best trial {self.best_trial}: val {self.metric} = {self.best_value:.4f} "
                f"(majority-class baseline {self.baseline:.4f})"
            )
            params = self.best_params.items()
            out.append(
                "  " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params)
            )
        if self.mlflow_uri:
            out.append(f"MLflow: mlflow ui --backend-store-uri {self.mlflow_uri}")
        out.append(f"trials: hpo trials --study {self.study} --storage {self.storage}")
        return out


def finish(report: TuneReport, study: optuna.Study, tracker: Tracker) -> None:
    """Fill the outcome counts and the best trial; log the best on the study's MLflow parent run."""
    report.counts = count_states(study)
    try:
        best = study.best_trial
        report.best_value, report.best_trial, report.best_params = best.value, best.number, dict(best.params)
    except ValueError:
        pass
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
