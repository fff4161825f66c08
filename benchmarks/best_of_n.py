"""Consistency as a reward: prompt-to-line inconsistency with best-of-N vs N=1.

Same users (layered, sampled from the persona file with --seed), same session
seeds, same catalog (MovieLens-100k by popularity), same judge (structured);
only N differs. Candidate 0 of best-of-N is exactly the N=1 answer at the
first turn (same sub-seed), so the comparison is paired. Prints and writes a
JSON with both inconsistencies, the relative cut, and a paired bootstrap 95%
interval over users for the difference.

    .venv/bin/python benchmarks/best_of_n.py [--users 18] [--turns 3] [--n 4] [--seed 0] [--out runs/best_of_n.json]

Note: the reward *is* the structured judge's score, so this measures how much
selection can buy on that judge; a different judge would be a fairer
held-out check (see README).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from evals.commands.simulate import load_catalog
from personas.card import read_personas
from simulator import PopularityRecommender, SessionSettings, sample_users, summarize
from simulator.batch import run_sessions
from simulator.llm import create_client


def per_user_inconsistency(transcripts) -> dict[str, float]:
    out = {}
    for tr in transcripts:
        vals = [t.consistency["prompt_to_line"] for t in tr.turns if t.ok and t.consistency.get("prompt_to_line") is not None]
        if vals:
            out[tr.user_id] = 1.0 - float(np.mean(vals))
    return out


async def arm(users, items, pop, turns, seed, n, cache_dir) -> tuple[list, dict]:
    llm = create_client("embedded", cache_dir=cache_dir, concurrency=1)
    started = time.perf_counter()
    try:
        trs = await run_sessions(
            users, lambda u: PopularityRecommender(items, pop), turns=turns, seed=seed, llm=llm,
            settings=SessionSettings(best_of=n, qa_turns=[]), in_flight=4,
        )
    finally:
        await llm.aclose()
    cost = {"seconds": round(time.perf_counter() - started, 1), "requests": llm.usage.requests,
            "tokens_out": llm.usage.tokens_out, "failures": llm.usage.failures, "model": llm.model}
    return trs, cost


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--personas", default=str(Path(__file__).resolve().parents[1] / "examples" / "personas_movies.jsonl"))
    ap.add_argument("--users", type=int, default=18)
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/best_of_n.json")
    args = ap.parse_args()

    items, pop = load_catalog("ml-100k")
    users = sample_users(read_personas(args.personas), args.users, args.seed)
    with tempfile.TemporaryDirectory() as cache:  # fresh cache: both arms really run the model
        base, base_cost = asyncio.run(arm(users, items, pop, args.turns, args.seed, 1, cache))
        best, best_cost = asyncio.run(arm(users, items, pop, args.turns, args.seed, args.n, cache))
    s1, sn = summarize(base), summarize(best)
    u1, un = per_user_inconsistency(base), per_user_inconsistency(best)
    common = sorted(set(u1) & set(un))
    diffs = np.array([un[u] - u1[u] for u in common])
    rng = np.random.default_rng(args.seed)
    boot = [float(np.mean(rng.choice(diffs, len(diffs)))) for _ in range(2000)] if len(diffs) else [float("nan")]
    i1, i_n = s1["prompt_to_line_inconsistency"], sn["prompt_to_line_inconsistency"]
    result = {
        "users": args.users, "turns": args.turns, "seed": args.seed, "n": args.n, "model": base_cost["model"],
        "judge": "structured",
        "inconsistency_n1": i1, f"inconsistency_n{args.n}": i_n,
        "relative_cut": None if not i1 else (i1 - i_n) / i1,
        "diff_mean": float(np.mean(diffs)) if len(diffs) else None,
        "diff_ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
        "line_to_line_n1": s1["line_to_line"], f"line_to_line_n{args.n}": sn["line_to_line"],
        "lines_n1": s1["n_lines"], f"lines_n{args.n}": sn["n_lines"],
        "failed_n1": s1["n_failed"], f"failed_n{args.n}": sn["n_failed"],
        "cost_n1": base_cost, f"cost_n{args.n}": best_cost,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"prompt-to-line inconsistency: N=1 {i1:.3f} -> best-of-{args.n} {i_n:.3f} "
          f"({100 * (result['relative_cut'] or 0):.0f}% cut; per-user diff {result['diff_mean']:+.3f}, "
          f"95% CI [{result['diff_ci95'][0]:+.3f}, {result['diff_ci95'][1]:+.3f}])")


if __name__ == "__main__":
    main()
