"""Which code is running: a digest over personasim's own sources, recorded beside anything a run writes (a
campaign's turns, a read of the fidelity test part)."""

from __future__ import annotations

import importlib.metadata
from functools import lru_cache
from pathlib import Path

from personas.infra.files import files_digest

#: The packages whose .py files make `code_version`'s digest.
CODE_PACKAGES = ("personas", "recsys", "simulator", "evals")
_ROOT = Path(__file__).resolve().parents[2]


@lru_cache(maxsize=1)
def code_version() -> dict:
    """The code running now: personasim's version and ``sources``, 12 hex chars over the relative path and
    bytes of every .py file of CODE_PACKAGES (a checkout without git has them too)."""
    sources = files_digest([path for package in CODE_PACKAGES for path in sorted((_ROOT / package).rglob("*.py"))],
                           _ROOT)
    try:
        version = importlib.metadata.version("personasim")
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"version": version, "sources": sources[:12]}
