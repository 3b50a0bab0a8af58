"""`hpo report`'s page (hpo.results.report_html): one self-contained file, every section present, and a
note instead of an empty chart where the study recorded nothing."""

from __future__ import annotations

from pathlib import Path

import optuna

from hpo.results.report_html import write_report
from hpo.trial import keys as K
from tests.unit.test_report_data import MEASURED, TrialState, _trial


def test_report_is_one_offline_file(tmp_path: Path) -> None:
    s = optuna.create_study(study_name="s", direction="maximize")
    s.add_trials(
        [
            _trial(TrialState.COMPLETE, {K.ESTIMATED_PEAK_GB: 4.0, **MEASURED}, 0.8),
            _trial(TrialState.COMPLETE, {K.ESTIMATED_PEAK_GB: 5.0}, 0.6),
            _trial(
                TrialState.PRUNED,
                {K.ESTIMATED_PEAK_GB: 9.0, K.OOM: True, K.OOM_CONFIG: {"epoch": 0}, K.PRUNED_REASON: "oom"},
            ),
        ]
    )
    page = write_report(s, tmp_path / "sub" / "r.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "cdn" not in page.split("</script>", 1)[1].lower()
    for title in ("Optimization history", "Memory map", "Estimator error", "Timeline", "OOM trials"):
        assert title in page
    assert page.count('class="plotly-graph-div"') >= 5
    assert "Not shown: no memory ledger" in page  # no --par: nothing drawn for reservations
    assert "1 OOM trial" in page
