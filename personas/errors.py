"""The one exception personas/ raises for bad input (the CLI prints it as one line)."""

from __future__ import annotations


class PersonaError(ValueError):
    """Input that cannot become personas; the message names the file, column or count."""
