"""MLflow child runs read on their own: "trial 12 · pruned: oom", with the state and reason as tags."""

from __future__ import annotations

from hpo.trial import keys as K
from hpo.trial.outcomes import end_tags


def test_run_names() -> None:
    assert K.run_name(12, "PRUNED", "oom") == "trial 12 · pruned: oom"
    assert K.run_name(3, "COMPLETE") == "trial 3 · complete"
    assert K.run_name(4, "FAIL", "ValueError") == "trial 4 · failed: ValueError"


def test_end_tags_carry_state_reason_and_name() -> None:
    tags = end_tags(7, "PRUNED", K.REASON_OOM, {K.OOM: "true"})
    assert tags == {
        K.STATE_TAG: "PRUNED",
        K.PRUNED_REASON: "oom",
        K.RUN_NAME_TAG: "trial 7 · pruned: oom",
        K.OOM: "true",
    }
    failed = end_tags(8, "FAIL", "RuntimeError", {K.ERROR: "RuntimeError"})
    assert K.PRUNED_REASON not in failed and failed[K.RUN_NAME_TAG] == "trial 8 · failed: RuntimeError"
