"""Errors of the LLM layer. Messages are one line, say what to fix, hold no secrets."""

from __future__ import annotations

import os


class LLMConfigError(ValueError):
    """Bad configuration found before any call: unknown backend, missing model, no key."""


class TransientError(RuntimeError):
    """A failure worth retrying (429, 5xx, timeout, connection reset, garbled body)."""

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(RuntimeError):
    """A failure no retry will fix (400, 401, 404): recorded at once."""


_SECRET_ENV_HINTS = ("KEY", "TOKEN", "SECRET", "PASSWORD")


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove every secret value (given, or any *KEY/*TOKEN env var) from ``text``."""
    values = [s for s in secrets if s]
    values += [v for k, v in os.environ.items() if any(h in k.upper() for h in _SECRET_ENV_HINTS) and len(v) >= 8]
    for value in sorted(set(values), key=len, reverse=True):
        text = text.replace(value, "***")
    return text
