"""The report of a 2,000-session campaign: file size, render time, and how fast Chromium shows it,
each as a ratio to a ~100-session report measured in the same run.

    .venv/bin/python -m benchmarks.report_render [--repeats 3]

For each size it builds a synthetic campaign folder (tests/campaign_fixtures.py: real TurnEvent
records scored by the session scorer), renders it with `personasim campaign report`'s code (statistics
included), and loads it in headless Chromium (--dump-dom) `repeats` times:
- wall: the chromium process, start to DOM dump (and above an empty page's: the page's own share);
- load: the page's load event (performance.now(), from navigation start: HTML parse, inline images,
  the transcript JSON parsed and the first page of sessions built);
- click: one grid click that filters every session and builds the matching page (in the page).
Target (issue 14): a 2,000-session report renders in Chromium in < 5 s on 2 cores, and stays < ~20 MB.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from evals.report.summary import write_campaign_report
from tests.campaign_fixtures import write_campaign
from tests.chromium import CHROMIUM_FLAGS, chromium

ROOT = Path(__file__).resolve().parents[1]


#: Appended to a copy of the report: times one grid click (filter + build the page) inside the page.
CLICK = """<script>
window.addEventListener("load", () => {
  const b = document.querySelector("button.pick");
  const t0 = performance.now();
  b.click();
  document.body.dataset.clickMs = (performance.now() - t0).toFixed(1);
});
</script></body>"""


def _chromium(url: str, profile: Path) -> tuple[float, str]:
    """(wall seconds, dumped DOM) of one headless load."""
    t0 = time.perf_counter()
    res = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=2000",
                          "--dump-dom", url], capture_output=True, text=True, timeout=300)
    return time.perf_counter() - t0, res.stdout


def _attr(dom: str, name: str) -> float:
    found = re.search(rf'{name}="([0-9.]+)"', dom)
    if not found:
        raise SystemExit(f"the page did not set {name}: did its scripts fail?")
    return float(found.group(1))


def measure(users_per_persona: int, tmp: Path, repeats: int) -> dict:
    out = write_campaign(tmp / f"campaign-{users_per_persona}", users_per_persona=users_per_persona)
    t0 = time.perf_counter()
    html_path, warnings, _ = write_campaign_report(out)
    render_s = time.perf_counter() - t0
    assert not warnings, warnings
    driven = out / "driven.html"
    driven.write_text(html_path.read_text(encoding="utf-8").replace("</body>", CLICK), encoding="utf-8")
    walls, loads, readies, clicks = [], [], [], []
    for i in range(repeats):
        wall, dom = _chromium(driven.as_uri(), tmp / f"profile-{users_per_persona}-{i}")
        walls.append(wall)
        loads.append(_attr(dom, "data-loaded-ms"))
        readies.append(_attr(dom, "data-ready-ms"))
        clicks.append(_attr(dom, "data-click-ms"))
    return {"sessions": _sessions(html_path), "mb": html_path.stat().st_size / 1e6, "render_s": render_s,
            "wall_s": statistics.median(walls), "load_ms": statistics.median(loads),
            "ready_ms": statistics.median(readies), "click_ms": statistics.median(clicks)}


def _sessions(html_path: Path) -> int:
    return int(re.search(r"(\d+) sessions · tokens", html_path.read_text(encoding="utf-8")).group(1))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        blank = tmp / "blank.html"
        blank.write_text("<!doctype html><title>blank</title><p>blank</p>")
        blank_s = statistics.median(_chromium(blank.as_uri(), tmp / f"profile-blank-{i}")[0] for i in range(a.repeats))
        # sessions: 3 personas x N users x 2 user variants x 2 recommender variants x 2 runs
        small = measure(4, tmp, a.repeats)    # 96
        large = measure(83, tmp, a.repeats)   # 1,992
    print(f"chromium on an empty page: {blank_s:.2f} s wall (its start-up)")
    for name, r in (("small", small), ("large", large)):
        print(f"{name}: {r['sessions']} sessions, report {r['mb']:.2f} MB, rendered in {r['render_s']:.1f} s "
              f"(statistics included); Chromium: {r['wall_s']:.2f} s wall ({r['wall_s'] - blank_s:+.2f} s vs an empty "
              f"page), load event at {r['load_ms']:.0f} ms, "
              f"browser ready at {r['ready_ms']:.0f} ms, one grid click {r['click_ms']:.1f} ms")
    print(f"ratios large / small ({large['sessions'] / small['sessions']:.1f}x the sessions): "
          f"size {large['mb'] / small['mb']:.1f}, render {large['render_s'] / small['render_s']:.1f}, "
          f"Chromium wall {large['wall_s'] / small['wall_s']:.2f}, "
          f"load event {large['load_ms'] / small['load_ms']:.2f}, "
          f"grid click {large['click_ms'] / max(small['click_ms'], 0.1):.1f}")
    verdict = "met" if large["wall_s"] < 5 and large["mb"] < 20 else "NOT met"
    print(f"target (< 5 s in Chromium, < 20 MB for 2,000 sessions): {verdict}")


if __name__ == "__main__":
    main()
