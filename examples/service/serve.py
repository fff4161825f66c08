"""An example recommender service that keeps `recsys.service`'s schema: popularity over ML-100k's training
positives (leave-last-out, ratings >= 4), item ids = MovieLens item ids.

    .venv/bin/python examples/service/serve.py --port 8700 [--host 127.0.0.1] [--latency-ms 20]
        [--faulty {duplicates,unknown_ids,slow}]

- ``GET /health`` -> {"status": "ok", "items": N}
- ``POST /recommend`` {"users": [{"liked": [ids]}, ...], "k": K} -> {"items": [[ids], ...]}: the K most popular
  items each user has not liked; ties broken by the item's position in ML-100k's item file (the column order
  `recsys.load_movielens` gives, so the in-process `recsys.Popularity` ranks the same). Unknown liked ids are
  ignored.

``--latency-ms`` sleeps that long in every /recommend (a remote service's latency, for the benchmark).
``--faulty`` breaks every /recommend answer one way, for tests: ``duplicates`` (each list's second item is its
first again), ``unknown_ids`` (each list starts with an id outside the catalog), ``slow`` (answers after
`SLOW_S` seconds).
"""

from __future__ import annotations

import argparse
import asyncio

import numpy as np
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, Field

SLOW_S = 10.0
FAULTS = ("duplicates", "unknown_ids", "slow")


class User(BaseModel):
    liked: list[str] = Field(default_factory=list, description="item ids the user liked; never recommended back")


class RecommendRequest(BaseModel):
    users: list[User]
    k: int = Field(ge=1, description="at most this many items a user")


class RecommendAnswer(BaseModel):
    items: list[list[str]] = Field(description="per user, in request order: item ids, best first")


def popularity_order() -> list[str]:
    """ML-100k item ids, most training positives first; ties in item-file order."""
    from personas.infra.assets import ml100k_dir
    from recsys import leave_last_out, load_movielens

    ds = load_movielens(ml100k_dir())
    counts = np.asarray(leave_last_out(ds).train.sum(axis=0)).ravel()
    ids = ds.items["item_id"].astype(str).to_numpy()
    return ids[np.argsort(-counts, kind="stable")].tolist()


def build_app(order: list[str], *, latency_ms: float = 0.0, faulty: str | None = None) -> FastAPI:
    app = FastAPI(title="personasim example recommender: popularity")

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "items": len(order)}

    @app.post("/recommend", response_model=RecommendAnswer)
    async def recommend(req: RecommendRequest) -> RecommendAnswer:
        if latency_ms > 0:
            await asyncio.sleep(latency_ms / 1000)
        if faulty == "slow":
            await asyncio.sleep(SLOW_S)
        lists = []
        for user in req.users:
            liked = set(user.liked)
            ranked = [i for i in order[:req.k + len(liked)] if i not in liked][:req.k]
            if faulty == "duplicates" and len(ranked) >= 2:
                ranked[1] = ranked[0]
            elif faulty == "unknown_ids":
                ranked = ["no-such-item", *ranked[:-1]]
            lists.append(ranked)
        return RecommendAnswer(items=lists)

    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8700)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--latency-ms", type=float, default=0.0, help="sleep this long in every /recommend")
    p.add_argument("--faulty", choices=FAULTS, default=None, help="break every /recommend answer this way (tests)")
    a = p.parse_args()
    app = build_app(popularity_order(), latency_ms=a.latency_ms, faulty=a.faulty)
    # a slow answer still in flight must not hold shutdown for SLOW_S
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning", timeout_graceful_shutdown=1)


if __name__ == "__main__":
    main()
