"""Errors the core raises for bad input; the CLI turns them into one line and exit code 2."""

from __future__ import annotations


class HpoError(Exception):
    """A user-facing error: ``message`` names the problem, ``fix`` says what to do about it."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} ({self.fix})" if self.fix else self.message


class ConfigError(HpoError):
    """Invalid configuration: malformed YAML, unknown keys, impossible values."""


class DataError(HpoError):
    """Missing data files or columns, unknown labels, empty splits."""


class ModelError(HpoError):
    """Unknown model, or a model that cannot be loaded."""


class StorageError(HpoError):
    """Unreachable or unusable Optuna storage, unknown study."""


class CacheError(HpoError):
    """A derived file on disk (the tokenization cache) still cannot be read after it was rebuilt."""


class RepeatedFailureError(HpoError):
    """Trials kept failing the same way: the run stopped (finished trials are kept)."""


class StorageDown(StorageError):
    """The storage stayed unreachable past --storage-retry (hpo.storage.retry): the run stopped (exit 75)."""
