"""What a recommender behind HTTP adds to a campaign: the same popularity model in-process and behind the
example service (examples/service/serve.py, with --latency-ms), on a campaign's slates, in one run.

Issue 35's target: <= 10% added wall time at 20 ms latency.

Workload, as `evals.campaign.world.RecsysAdapter.recommend` does it: each simulated user starts from 5 liked
items (training positives of a real ML-100k user, drawn with --seed); each of --turns turns folds the likes in,
scores the catalog, takes the top 5 with `recsys.slate` leaving out every item shown so far, and likes one item
of the slate (its position drawn with --seed, the same for both arms). The arms alternate user by user, so a
change in machine load hits both alike.

The added share of a campaign's wall time takes a turn's time from docs/results/performance.md: a grounded
turn of the default campaign takes about `TURN_S` of LLM time, one slate a turn, sessions one at a time
(`sessions_in_flight: 1`), so a slate's extra time adds to the wall time in full.

    .venv/bin/python -m benchmarks.service_overhead [--latency-ms 20] [--users 96] [--turns 3] [--seed 0]
        [--out runs/service_overhead.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import numpy as np

from personas.infra.assets import ml100k_dir
from recsys import Popularity, leave_last_out, load_movielens, slate
from recsys.service import ServiceRecommender

ROOT = Path(__file__).resolve().parents[1]
#: seconds of LLM time a grounded turn of the default campaign takes (docs/results/performance.md, the
#: 2026-12-06 run of config 5294f5934e72: 2.0 s; 1.9 s in the two runs before it)
TURN_S = 2.0
SLATE_K, ONBOARD_LIKES = 5, 5


@contextlib.contextmanager
def example_service(latency_ms: float):
    """The example service on a free port of 127.0.0.1 until the block ends (`tests.servers.process.serve`, as
    the other benchmarks start their servers); yields its URL."""
    from tests.servers.process import free_port, serve

    port = free_port()
    args = [str(ROOT / "examples" / "service" / "serve.py"), "--port", str(port), "--latency-ms", str(latency_ms)]
    with serve(args, port, ready_path="/health") as url:
        yield url.removesuffix("/v1")


def workload(train, users: int, turns: int, seed: int) -> list[tuple[np.ndarray, list[int]]]:
    """Per simulated user: (onboarding likes [ONBOARD_LIKES], the slate position liked at each turn [turns])."""
    rng = np.random.default_rng(seed)
    ptr = train.indptr
    rich = np.flatnonzero(np.diff(ptr) >= ONBOARD_LIKES)
    out = []
    for u in rng.choice(rich, size=users, replace=len(rich) < users):
        likes = rng.choice(train.indices[ptr[u]:ptr[u + 1]], size=ONBOARD_LIKES, replace=False)
        out.append((likes, rng.integers(0, SLATE_K, size=turns).tolist()))
    return out


def session(model, likes: np.ndarray, picks: list[int], seed: int) -> tuple[list[float], list[list[int]]]:
    """One simulated user's slates: (seconds per slate, the slates)."""
    liked, shown = [int(i) for i in likes], {int(i) for i in likes}
    times, slates = [], []
    for pick in picks:
        t0 = time.perf_counter()
        scores = model.score_params(model.fold_in(np.asarray(liked), 60, seed=seed))
        picked = slate(scores, SLATE_K, exclude=np.fromiter(shown, dtype=np.int64))
        times.append(time.perf_counter() - t0)
        slates.append(picked.tolist())
        shown.update(int(i) for i in picked)
        if pick < len(picked) and int(picked[pick]) not in liked:
            liked.append(int(picked[pick]))
    return times, slates


def summary(times: list[float]) -> dict:
    ms = np.asarray(times) * 1000
    return {"mean_ms": round(float(ms.mean()), 3), "median_ms": round(float(np.median(ms)), 3),
            "p95_ms": round(float(np.percentile(ms, 95)), 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latency-ms", type=float, default=20.0, help="the service sleeps this long per /recommend")
    p.add_argument("--users", type=int, default=96, help="simulated users (the default campaign has 96 sessions)")
    p.add_argument("--turns", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    a = p.parse_args()

    ds = load_movielens(ml100k_dir())
    train = leave_last_out(ds).train
    local = Popularity().fit(train)
    plan = workload(train, a.users, a.turns, a.seed)
    with example_service(a.latency_ms) as url:
        remote = ServiceRecommender(url)
        remote.set_catalog(ds.items["item_id"])
        remote.fit(train)
        session(remote, plan[0][0], [0], a.seed)  # warm-up: the connection, the service's first request
        times = {"in-process": [], "service": []}
        same = {"in order": 0, "as sets": 0, "same popularity counts": 0}
        for likes, picks in plan:
            t_local, s_local = session(local, likes, picks, a.seed)
            t_remote, s_remote = session(remote, likes, picks, a.seed)
            times["in-process"] += t_local
            times["service"] += t_remote
            for x, y in zip(s_local, s_remote):
                same["in order"] += x == y
                same["as sets"] += set(x) == set(y)
                same["same popularity counts"] += sorted(local.counts[x]) == sorted(local.counts[y])
        remote.close()

    arms = {arm: summary(t) for arm, t in times.items()}
    added_s = (arms["service"]["mean_ms"] - arms["in-process"]["mean_ms"]) / 1000
    share = added_s / (TURN_S + arms["in-process"]["mean_ms"] / 1000)
    slates = a.users * a.turns
    result = {
        "latency_ms": a.latency_ms, "users": a.users, "turns": a.turns, "seed": a.seed, "slates": slates,
        "arms": arms, "added_ms_per_slate": round(added_s * 1000, 3),
        "http_ms_per_slate": round(added_s * 1000 - a.latency_ms, 3),
        "assumed_turn_s": TURN_S, "added_share_of_wall_time": round(share, 5), "target_share": 0.10,
        "met": bool(share <= 0.10), "identical_slates": same,
    }
    print(f"{slates} slates ({a.users} users x {a.turns} turns, top {SLATE_K}), service latency {a.latency_ms:g} ms")
    for arm, s in arms.items():
        print(f"  {arm:>10}: {s['mean_ms']:8.3f} ms a slate (median {s['median_ms']:.3f}, p95 {s['p95_ms']:.3f})")
    print(f"  added: {added_s * 1000:.3f} ms a slate, of which {result['http_ms_per_slate']:.3f} ms beyond the "
          f"latency (HTTP, JSON, the service's ranking)")
    print(f"  assumption: a grounded turn takes {TURN_S:g} s of LLM time (docs/results/performance.md), one slate "
          "a turn, sessions one at a time")
    print(f"  added share of a campaign's wall time: {share:.2%} (target <= 10%: "
          f"{'met' if result['met'] else 'NOT met'})")
    print(f"  over these {slates} turns: +{added_s * slates:.1f} s against {slates * TURN_S:.0f} s of LLM time")
    print(f"  slates equal both ways, of {slates}: " + ", ".join(f"{n} {how}" for how, n in same.items())
          + " (the service breaks popularity ties by column, `recsys.slate` in argpartition's order)")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
