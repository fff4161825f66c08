"""Running `personasim` in a child process and checking the house rule for bad input: exit code 2, exactly
one stderr line `error: ...` naming the file, record or field, no traceback, and no file changed.

`bad_files(folder)` writes the usual bad inputs (empty, blank, binary, not UTF-8, 10 MB);
`read_only_folder(parent)` gives a folder the child cannot write to (`cli(read_only=True)`: as root, the child
runs without the capability that lets root ignore permission bits); `missing_package(folder, name)` shadows
an asset package so that it looks installed without its files; `full_disk(path)` makes every write to
``path`` fail with ENOSPC.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: root ignores permission bits through these capabilities; util-linux's setpriv runs a child without them.
NO_DAC_OVERRIDE = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                   "--bounding-set=-dac_override,-dac_read_search", "--"]


def cli(*args: str, env: dict | None = None, read_only: bool = False, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m evals.cli ARGS...` from the repository root. ``read_only``: the child honours permission bits
    even when we are root (so a folder of mode 0555 is read-only to it)."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("PERSONASIM_TRACEBACK", None)
    prefix = []
    if read_only and os.geteuid() == 0:
        assert shutil.which("setpriv"), "as root, read-only folders need util-linux's setpriv"
        prefix = NO_DAC_OVERRIDE
    return subprocess.run([*prefix, sys.executable, "-m", "evals.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env=full_env, timeout=timeout)


def snapshot(*paths: Path) -> dict[str, str]:
    """Every file (or link) under ``paths`` with a digest of its bytes; absent paths are recorded as such."""
    out: dict[str, str] = {}
    for root in paths:
        root = Path(root)
        if root.is_symlink() or root.is_file():
            files = [root]
        elif root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.is_symlink() or not p.is_dir())
            out.update({f"{p}/": "dir" for p in root.rglob("*") if p.is_dir() and not p.is_symlink()})
        else:
            out[str(root)] = "absent"
            continue
        for f in files:
            out[str(f)] = f"-> {os.readlink(f)}" if f.is_symlink() else hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Assert the house rule on a finished child; returns the line."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr[-2000:]
    line = lines[0]
    assert line.startswith("error: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def refused(args: list[str], needles: list[str], watch: list[Path], **kw) -> str:
    """Run ``args``, assert one error line holding every needle, and that nothing under ``watch`` changed."""
    before = snapshot(*watch)
    line = one_line_error(cli(*args, **kw), *needles)
    assert snapshot(*watch) == before, line
    return line


def bad_files(folder: Path) -> dict[str, Path]:
    """The usual bad inputs, by kind: empty, blank, binary, latin1 (not UTF-8), big (10 MB of text)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"empty": b"", "blank": b"\n  \n", "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
             "latin1": "caf\u00e9 cr\u00e8me\n".encode("latin-1"), "big": b"lorem ipsum dolor sit amet\n" * 400_000}
    paths = {}
    for kind, data in files.items():
        path = folder / f"{kind}.txt"
        path.write_bytes(data)
        paths[kind] = path
    return paths


@contextmanager
def read_only_folder(parent: Path) -> Iterator[Path]:
    """A folder (holding one file) that a `cli(read_only=True)` child cannot write to."""
    ro = parent / "read-only"
    ro.mkdir()
    (ro / "keep.txt").write_text("already here\n")
    ro.chmod(0o555)
    try:
        yield ro
    finally:
        ro.chmod(0o755)


def missing_package(folder: Path, package: str) -> dict[str, str]:
    """An environment in which ``package`` is importable but holds none of its files (an asset package
    installed wrong, or shadowed): its asset is then reported missing."""
    (folder / package).mkdir(parents=True, exist_ok=True)
    (folder / package / "__init__.py").write_text("")
    return {"PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)])}


def full_disk(path: Path) -> Path:
    """Every write to ``path`` fails with ENOSPC (No space left on device): it is a link to /dev/full."""
    path.symlink_to("/dev/full")
    return path
