"""Write a file whole or not at all; hash a file's content.

Every output personasim keeps (persona cards, calibrations, campaign records, fidelity
results, preference pairs, adapters) is written the same way: into ``<name>.tmp`` beside
it, flushed to disk, then renamed over it. A crash, a full disk or an interrupt leaves
the old file as it was and no temporary file behind. This lives in personas/, the bottom
layer, so that every package may import it (DESIGN.md, "Layering").
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from pathlib import Path


def write_whole(path: str | Path, data: str | bytes | Callable[[Path], None]) -> Path:
    """Replace ``path`` by ``data`` (text is written as UTF-8), or leave it untouched.

    ``data`` may be a function that writes the file itself, given the temporary path
    (for writers that want a file name, such as gguf's). Any error, and an interrupt,
    propagates once the temporary file is removed; an OSError that names no file (a full
    disk at flush) is given ``path`` as its file name, so the error line says what was not
    written. The parent folder must exist.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    write = data if callable(data) else (
        lambda t: t.write_bytes(data.encode("utf-8") if isinstance(data, str) else data))
    try:
        write(tmp)
        with open(tmp, "rb") as fh:  # what was written reaches the disk before the rename
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)
        raise
    return path


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (read in blocks: model files are megabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def files_digest(paths, base: str | Path) -> str:
    """Hex SHA-256 over ``paths`` in the order given: each one's path relative to ``base`` and its bytes (so a
    renamed file changes it too). For small text trees: prompt templates, source files."""
    h = hashlib.sha256()
    for path in paths:
        path = Path(path)
        h.update(path.relative_to(base).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()
