"""One trial: sample -> size -> attempts (OOM policy) -> outcomes, over a TrialContext."""
