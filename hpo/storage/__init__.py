"""The Optuna storage: study creation, RDB URLs, database checks and retries across storage restarts."""
