"""Reading a study back for `hpo trials`, `hpo best` and `hpo oom` (and the counts `hpo tune` prints)."""
