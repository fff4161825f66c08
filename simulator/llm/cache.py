"""On-disk response cache: a repeated run with the same inputs is free.

SQLite (WAL) so that several processes (Ray workers) can share one file.
Only successful answers are stored; failures are always retried. A value is any
pydantic record (a `Completion`, an `OptionProbs`); the caller names the type it
reads back, and its key says which kind of call it was.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from simulator.llm.types import Completion

R = TypeVar("R", bound=BaseModel)


def cache_key(**parts: Any) -> str:
    """sha256 over a canonical JSON of the parts (backend, model, messages, params, seed)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    def __init__(self, directory: str | Path):
        self.path = Path(directory) / "llm_cache.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.commit()

    def get(self, key: str, kind: type[R] = Completion) -> R | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return kind.model_validate_json(row[0]) if row else None

    def put(self, key: str, record: BaseModel) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)",
                (key, record.model_dump_json()),
            )
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
