"""Campaign throughput and memory, as ratios measured in one run.

(a) LLM calls/s of a campaign against a local OpenAI-compatible server that
    answers after a fixed delay, as a ratio to the concurrency bound C / delay;
(b) peak memory (max RSS of the campaign process) of a 2,000-session campaign
    vs a 100-session one: events stream to disk, so the ratio should stay near 1.

    .venv/bin/python benchmarks/campaign_scale.py [--delay 0.1] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers.process import free_port, serve  # noqa: E402


def config(url: str, users_per_persona: int, concurrency: int) -> dict:
    return {
        "name": "bench", "seed": 0,
        "personas": {"path": str(ROOT / "examples" / "personas_movies.jsonl")},
        "users_per_persona": users_per_persona, "user_variants": ["layered"], "variants": ["mf", "ampcf"],
        "turns": 2, "slate_size": 4, "runs_per_user": 1, "best_of": 1,
        "llm": {"backend": "openai", "base_url": url, "model": "fault-echo", "concurrency": concurrency, "cache": False},
        "recsys": {"dim": 16, "personas_k": 2, "epochs": 1, "onboarding_pool": 6},
        "sessions_in_flight": concurrency,
    }


def run_campaign(cfg: dict, out: Path) -> dict:
    """Run in a child process; return wall time of the session phase, LLM calls and peak RSS."""
    path = out.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(cfg))
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    before = usage0.ru_maxrss
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "evals.cli", "campaign", "run", str(path), "--out", str(out), "--quiet",
                          "--no-report"], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(res.stderr[-2000:])
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    rss_kb = usage.ru_maxrss
    cpu_s = (usage.ru_utime + usage.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    sessions = {(e["variant"], e["user_id"], e["run"]) for e in events}
    sessions_s = float(re.search(r"sessions ran in ([0-9.]+)s", res.stdout).group(1))
    return {"wall_s": wall, "sessions_s": sessions_s, "events": len(events), "sessions": len(sessions),
            "rss_mb": max(rss_kb, before) / 1024, "cpu_s": cpu_s}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--delay", type=float, default=0.1)
    p.add_argument("--concurrency", type=int, default=16)
    a = p.parse_args()
    port = free_port()
    with serve(["-m", "tests.servers.fault_openai", "--port", str(port), "--delay", str(a.delay), "--answer-schema"],
               port) as url, tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        small = run_campaign(config(url, 17, a.concurrency), tmp / "small")    # 3 personas x 17 users x 2 variants ~ 100
        large = run_campaign(config(url, 334, a.concurrency), tmp / "large")   # ~2,000 sessions
        calls = sum(httpx.get(url.removesuffix("/v1") + "/stats").json()["attempts"].values())  # both campaigns
    for name, r in (("small", small), ("large", large)):
        print(f"{name}: {r['sessions']} sessions, {r['events']} turns, {r['wall_s']:.1f}s in all, "
              f"{r['sessions_s']:.1f}s running sessions, {r['cpu_s']:.1f}s CPU "
              f"({1000 * r['cpu_s'] / r['sessions']:.0f} ms per session, set-up and training included)")
    calls_per_session = calls / (small["sessions"] + large["sessions"])
    rate = large["sessions"] * calls_per_session / large["sessions_s"]
    bound = a.concurrency / a.delay
    print(f"(a) {rate:.1f} LLM calls/s at C={a.concurrency}, delay {a.delay}s (bound {bound:.0f}/s) "
          f"-> ratio {rate / bound:.2f}; the campaign process was busy {large['cpu_s'] / large['wall_s']:.0%} "
          f"of the wall time (100% = one core)")
    print(f"(b) peak RSS: 2,000-session campaign up to {large['rss_mb']:.0f} MB vs 100-session {small['rss_mb']:.0f} MB "
          f"-> ratio {large['rss_mb'] / small['rss_mb']:.2f}")


if __name__ == "__main__":
    main()
