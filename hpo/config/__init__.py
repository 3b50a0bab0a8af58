"""Configuration: the study and trial settings, the model catalog, YAML reading and the study fingerprint."""
