"""Headless Chromium for the report tests and benchmarks/report_render.py (Debian's chromium, `make chromium`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def chromium() -> str:
    path = shutil.which("chromium")
    assert path, "Debian's chromium is installed by `make test` (target chromium)"
    return path


def dump_dom(url: str, profile: Path, budget_ms: int = 5000, timeout: int = 120) -> str:
    """The DOM after the page ran its scripts (and ``budget_ms`` of virtual time for its timers)."""
    res = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                          f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
                         capture_output=True, text=True, timeout=timeout)
    return res.stdout


def screenshot(url: str, profile: Path, out: Path, size: str = "1100,2600", timeout: int = 120) -> Path:
    subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={size}",
                    f"--screenshot={out}", url], capture_output=True, timeout=timeout)
    return out
