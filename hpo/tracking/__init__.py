"""MLflow tracking: the tracker, its outbox for failed writes, and its setup (quiet logging, URIs)."""
