"""Reading what a person hands to personasim (configs, schemas, catalogs, personas files, output folders),
with errors that name the file and say what is wrong with it."""

from __future__ import annotations

from pathlib import Path

#: A config or a JSON schema is a few KB; anything this large is the wrong file.
SMALL_FILE_BYTES = 1 << 20


class InputError(ValueError):
    """An input file or folder that cannot be used; the message names it."""


def first_error(exc) -> str:
    """One line for a pydantic ValidationError: the first failing field and why (and how many more)."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"field {field!r}: {msg}{more}"


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB" if n >= 1 << 20 else f"{n:,} bytes"


def read_text(path: str | Path, what: str, max_bytes: int | None = None, empty_ok: bool = False) -> str:
    """The UTF-8 text of ``path`` (a ``what``, e.g. "campaign config"). InputError for a missing file, a
    folder, a file over ``max_bytes``, a binary file (a NUL byte), text that is not UTF-8, or (unless
    ``empty_ok``) a file with nothing but white space."""
    path = Path(path)
    try:
        if path.is_dir():
            raise InputError(f"{path}: is a folder, not a {what}")
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise InputError(f"{path}: {_size(size)}, larger than a {what} can be ({_size(max_bytes)}): the wrong file?")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such {what}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise InputError(f"{path}: a binary file (NUL byte at offset {nul}), not a {what}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}), "
                         f"not a {what}") from None
    if not empty_ok and not text.strip():
        raise InputError(f"{path}: empty {what}")
    return text


def check_output_dir(path: str | Path, option: str = "--out") -> Path:
    """``path`` as an output folder: refused (InputError) when it exists and is not a folder, or cannot be
    written. Creates nothing."""
    import os

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{option} {path}: exists and is not a folder")
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}: cannot write to {existing} (permission denied)")
    return path


def read_personas_file(path: str | Path):
    """``personas.read_personas`` with the file checked first, so a binary or non-UTF-8 file is one line
    naming it (read_personas would raise a bare UnicodeDecodeError)."""
    from personas.card import read_personas

    read_text(path, "personas file", empty_ok=True)  # read_personas names an empty one
    return read_personas(path)
