"""Running a study: setup, the serial run, the parallel launcher (parent), the worker (child), the ledger."""
