"""On-disk response cache: a repeated run with the same inputs is free.

SQLite (WAL) so that several processes (Ray workers) can share one file on one
machine. Not across machines: on a network file system SQLite's locks and WAL's
shared memory do not hold between hosts (sqlite.org/wal.html), so a campaign
whose workers may run elsewhere refuses a cache there (`network_filesystem`).
Only successful answers are stored; failures are always retried. A value is any
pydantic record (a `Completion`, an `OptionProbs`); the caller names the type it
reads back, and its key says which kind of call it was.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from personas.infra.files import file_sha256
from simulator.llm.types import Completion

R = TypeVar("R", bound=BaseModel)


#: File systems shared over a network (psutil's fstype; FUSE ones as ``fuse.NAME``).
NETWORK_FILESYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre",
                                 "gpfs", "beegfs", "ocfs2", "gfs2", "sshfs", "s3fs", "gcsfuse", "juicefs", "rclone"})


def network_filesystem(path: str | Path, partitions=None) -> str | None:
    """'FSTYPE at MOUNTPOINT' when ``path`` (which need not exist yet) lies on a network file system, else None.
    ``partitions``: records with ``mountpoint`` and ``fstype``; default psutil.disk_partitions(all=True)."""
    if partitions is None:
        import psutil

        partitions = psutil.disk_partitions(all=True)
    target = Path(path).resolve()
    mounts = [p for p in partitions if target.is_relative_to(p.mountpoint)]
    if not mounts:
        return None
    # the innermost mount holding the path; of two at one place the later in the table, which covers the earlier
    _, mount = max(enumerate(mounts), key=lambda ip: (len(Path(ip[1].mountpoint).parts), ip[0]))
    fstype = mount.fstype.lower().removeprefix("fuse.")
    return f"{mount.fstype} at {mount.mountpoint}" if fstype in NETWORK_FILESYSTEMS else None


def content_tag(path: str | Path) -> str:
    """8 hex chars of a file's SHA-256: part of a tuned model's name (an adapter, a persona axis), so that
    two adapters in folders of the same name never share cache entries or a model label."""
    return file_sha256(path)[:8]


def cache_key(**parts: Any) -> str:
    """sha256 over a canonical JSON of the parts (backend, model, messages, params, seed)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


#: How long a cache call waits for another process's lock (SQLite's busy timeout; the WAL switch's own budget).
BUSY_TIMEOUT_S = 30.0


def _use_wal(db: sqlite3.Connection, path: Path) -> None:
    """Put the file in WAL mode. WAL is a property of the file, so the mode is read first and only a new file
    is converted. Converting takes the file exclusively, and SQLite does not run the busy handler for it: when
    several processes open a new cache at once (Ray workers), the losers get "database is locked" at once,
    whatever the timeout. They retry with backoff within BUSY_TIMEOUT_S, and one that finds the conversion
    done by another is done."""
    deadline, pause = time.monotonic() + BUSY_TIMEOUT_S, 0.01
    while True:
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            if db.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() == "wal":
                return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        if time.monotonic() > deadline:
            raise sqlite3.OperationalError(f"{path}: still locked by another process after {BUSY_TIMEOUT_S:.0f} s; "
                                           "could not switch it to WAL")
        time.sleep(pause)
        pause = min(2 * pause, 0.5)


class ResponseCache:
    def __init__(self, directory: str | Path):
        self.path = Path(directory) / "llm_cache.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
        _use_wal(self._db, self.path)
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
