"""Campaign throughput, CPU and memory, as ratios measured in one run.

Two campaigns (about 100 and --sessions sessions, default 10,000) against a local
OpenAI-compatible server that answers after a fixed delay, each in a child process:

(a) LLM calls/s of the large campaign's session phase, as a ratio to the
    concurrency bound C / delay (targets: >= 0.9 at C = 16, 0.1 s); 2C sessions are
    in flight, the config defaults' ratio (8 sessions, 4 calls), so sessions waiting
    on a fold-in do not leave an LLM slot empty;
(b) CPU per session: the large run's CPU minus the small run's (both train the same
    models) over the extra sessions, i.e. what one more session costs (target <= 30 ms),
    and the whole process's CPU over its sessions, set-up and training included;
(c) peak memory (max RSS of the campaign process) of the large campaign vs the small
    one: events stream to disk and at most C sessions are held, so the ratio should
    stay near 1 (target <= 1.1).

    .venv/bin/python -m benchmarks.campaign_scale [--delay 0.1] [--concurrency 16] [--sessions 10000]
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

from tests.servers.process import free_port, serve

ROOT = Path(__file__).resolve().parents[1]


def config(url: str, users_per_persona: int, concurrency: int) -> dict:
    return {
        "name": "bench", "seed": 0,
        "personas": {"path": str(ROOT / "examples" / "personas_movies.jsonl")},
        "users_per_persona": users_per_persona, "user_variants": ["layered"], "variants": ["mf", "ampcf"],
        "turns": 2, "slate_size": 4, "runs_per_user": 1, "best_of": 1,
        "llm": {"backend": "openai", "base_url": url, "model": "fault-echo", "concurrency": concurrency, "cache": False},
        "recsys": {"dim": 16, "mixture_k": 2, "epochs": 1, "onboarding_pool": 6},
        "sessions_in_flight": 2 * concurrency,
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


def show(name: str, r: dict) -> None:
    print(f"{name}: {r['sessions']} sessions, {r['events']} turns, {r['wall_s']:.1f}s in all, "
          f"{r['sessions_s']:.1f}s running sessions, {r['cpu_s']:.1f}s CPU "
          f"({1000 * r['cpu_s'] / r['sessions']:.0f} ms per session, set-up and training included)", flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--delay", type=float, default=0.1)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--sessions", type=int, default=10_000, help="size of the large campaign (about)")
    a = p.parse_args()
    large_users = max(17, round(a.sessions / 6))  # 3 personas x 2 variants per user
    port = free_port()
    with serve(["-m", "tests.servers.fault_openai", "--port", str(port), "--delay", str(a.delay), "--answer-schema"],
               port) as url, tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        small = run_campaign(config(url, 17, a.concurrency), tmp / "small")    # 3 personas x 17 users x 2 variants ~ 100
        show("small", small)
        large = run_campaign(config(url, large_users, a.concurrency), tmp / "large")
        show("large", large)
        calls = sum(httpx.get(url.removesuffix("/v1") + "/stats").json()["attempts"].values())  # both campaigns
    calls_per_session = calls / (small["sessions"] + large["sessions"])
    rate = large["sessions"] * calls_per_session / large["sessions_s"]
    bound = a.concurrency / a.delay
    marginal_ms = 1000 * (large["cpu_s"] - small["cpu_s"]) / (large["sessions"] - small["sessions"])
    print(f"(a) {rate:.1f} LLM calls/s at C={a.concurrency}, delay {a.delay}s (bound {bound:.0f}/s) "
          f"-> throughput / bound {rate / bound:.2f}; {large['sessions'] / large['sessions_s']:.1f} sessions/s, "
          f"{calls_per_session:.2f} LLM calls per session")
    print(f"(b) CPU per session: {marginal_ms:.1f} ms (one more session: large minus small run); "
          f"{1000 * large['cpu_s'] / large['sessions']:.1f} ms with set-up and training; the campaign processes were "
          f"busy {large['cpu_s'] / large['wall_s']:.0%} of the wall time (100% = one core)")
    print(f"(c) peak RSS: {large['sessions']:,}-session campaign {large['rss_mb']:.0f} MB vs "
          f"{small['sessions']}-session {small['rss_mb']:.0f} MB -> ratio {large['rss_mb'] / small['rss_mb']:.2f}")

if __name__ == "__main__":
    main()
