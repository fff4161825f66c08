"""Does a grounded user say what it decided, and at what cost? The planned voice against the free one, in one run.

    .venv/bin/python -m benchmarks.voice runs/default [--turns 60] [--seed 0]

Reads a campaign folder (its config, personas, calibration and events.jsonl) and replays ``--turns`` of its
grounded turns, drawn at random (seeded): each turn's user (persona, subtopic, context, twin), slate and
session seed are rebuilt, and `GroundedUser.propose` is called once with each voice, in alternating order,
on the embedded model with no response cache. The decision is the same for both (it is drawn before the
voice speaks); only the sentence differs. Prints, per voice:
- the median wall time of a turn (features, decision and the LLM call), and planned / free;
- the share of lines the structured check (`simulator.faithfulness`) finds faithful, with a Wilson 95% CI (scipy),
  each rule's pass rate and the unparseable count.
Writes RUN/voice.json (RUN/voice_seedS.json for another ``--seed``; config hash, model, seed in it). The campaign's own report shows the same check on the
lines it played; this replay puts both voices on the same decisions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from evals.campaign.driver import CampaignError, load_campaign, run_config_hash
from evals.campaign.events import EventLogError, TurnEvent, read_records
from evals.campaign.world import _grounding, catalog_items, personas_path_of
from personas.card import read_personas
from personas.infra.assets import ml100k_dir
from personas.infra.files import write_whole
from recsys import load_movielens
from simulator.faithfulness import faithfulness
from simulator.grounded import GroundedUser
from simulator.layers import UserProfile, derive_seed
from simulator.llm import create_client
from simulator.voice import VOICES

RULES = ("names_chosen", "no_passed", "sentiment_agrees", "reason", "not_degenerate")


def _rules(f) -> dict[str, bool | None]:
    return {"names_chosen": f.names_chosen, "no_passed": not f.names_passed if f.parsed else None,
            "sentiment_agrees": f.sentiment_agrees, "reason": f.reason,
            "not_degenerate": not f.degenerate if f.parsed else None}


def _share(values: list[bool]) -> dict:
    k, n = sum(values), len(values)
    lo, hi = binomtest(k, n).proportion_ci(method="wilson") if n else (None, None)
    return {"share": k / n if n else None, "ci": [lo, hi], "n": n}


def grounded_turns(run: Path):
    """What a replay of ``run``'s grounded turns needs: (config, its ok grounded TurnEvents, the grounding, the
    persona cards by id, the catalog items by id). ValueError when the run has no grounded turn."""
    cfg = load_campaign(run)
    events = [e for e in read_records(run / "events.jsonl", TurnEvent, "campaign turn (TurnEvent)")
              if e.user_variant == "grounded" and e.ok]
    if not events:  # before the grounding is built
        raise ValueError(f"{run / 'events.jsonl'}: no grounded turn to replay")
    ppath = personas_path_of(cfg, run)
    ds = load_movielens(ml100k_dir())
    cards = {c.id: c for c in read_personas(ppath)}
    return cfg, events, _grounding(cfg, ppath, ds), cards, {it.id: it for it in catalog_items(ds)[0]}


def profile_of(e: TurnEvent, cards: dict) -> UserProfile:
    """The user of a recorded turn: its persona, layers and twin, as the campaign drew them."""
    lay = e.layers
    return UserProfile(persona=cards[e.persona_id], subtopic=lay.get("subtopic"), context=lay.get("context", {}),
                       traits=lay.get("traits", {}), twin=lay.get("twin"), variant="grounded", user_id=e.user_id)


async def say(llm, grounding, e: TurnEvent, cards: dict, items: dict, voice: str = "planned", k: int = 0):
    """One candidate of a recorded turn's decision, said by ``voice`` (candidate ``k``: its own seed), and the
    seconds it took (features, decision and the LLM call)."""
    user = GroundedUser(llm, grounding=grounding, voice=voice)
    user.reset(profile_of(e, cards))
    started = time.perf_counter()
    cand = await user.propose([items[s.id] for s in e.slate], turn=e.turn, seed=derive_seed(e.seed, "turn", e.turn, k),
                              session_seed=e.seed)
    return cand, time.perf_counter() - started


async def replay(run: Path, turns: int, seed: int) -> dict:
    cfg, events, grounding, cards, items = grounded_turns(run)
    picked = np.random.default_rng(seed).choice(len(events), size=min(turns, len(events)), replace=False)
    llm = create_client(cfg.llm.backend, concurrency=1, cache_dir=None)
    rows = {v: [] for v in VOICES}
    try:
        for n, j in enumerate(sorted(picked.tolist())):
            e = events[j]
            for voice in (VOICES if n % 2 == 0 else VOICES[::-1]):
                cand, secs = await say(llm, grounding, e, cards, items, voice)
                f = faithfulness(cand.turn, evidence=cand.turn.evidence) if cand.turn.ok else None
                rows[voice].append({"seconds": secs, "ok": cand.turn.ok, "utterance": cand.turn.utterance,
                                    "faithful": None if f is None else f.faithful,
                                    "why": [] if f is None else f.reasons(),
                                    "rules": {} if f is None else _rules(f), "tokens_out": cand.turn.tokens_out})
    finally:
        await llm.aclose()
    out = {"run": str(run), "config_hash": run_config_hash(run), "config_hash_now": cfg.config_hash(),
           "model": llm.model, "seed": seed, "turns": len(picked)}
    for voice, rs in rows.items():
        lines = [r for r in rs if r["ok"] and r["faithful"] is not None]
        out[voice] = {
            "median_turn_s": statistics.median(r["seconds"] for r in rs),
            "median_tokens_out": statistics.median(r["tokens_out"] for r in rs),
            "failed": sum(not r["ok"] for r in rs),
            "unparseable": sum(r["ok"] and r["faithful"] is None for r in rs),
            "faithful": _share([bool(r["faithful"]) for r in rs if r["ok"]]),
            "rules": {k: _share([r["rules"][k] for r in lines if r["rules"].get(k) is not None]) for k in RULES},
            "examples": [r["utterance"] for r in rs[:8]],
            "unfaithful": [{"utterance": r["utterance"], "why": r["why"]} for r in rs if r["faithful"] is False],
        }
    out["planned_over_free_time"] = out["planned"]["median_turn_s"] / out["free"]["median_turn_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a campaign output folder with grounded turns in events.jsonl")
    ap.add_argument("--turns", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    started = time.perf_counter()
    try:
        out = asyncio.run(replay(a.run, a.turns, a.seed))
    except (CampaignError, EventLogError, ValueError, OSError) as exc:  # bad input: one line, exit code 2, nothing written
        ap.exit(2, f"error: {exc}\n")
    out["seconds"] = round(time.perf_counter() - started, 1)
    for voice in VOICES:
        v = out[voice]
        f = v["faithful"]
        print(f"{voice:8s} median turn {v['median_turn_s']:.3f} s ({v['median_tokens_out']:.0f} tokens out); faithful "
              f"{f['share']:.2f} [{f['ci'][0]:.2f}, {f['ci'][1]:.2f}] of {f['n']}; unparseable {v['unparseable']}, "
              f"failed {v['failed']}")
        print("         " + ", ".join(f"{k} {r['share']:.2f}" for k, r in v["rules"].items() if r["share"] is not None))
    print(f"planned / free turn time: {out['planned_over_free_time']:.2f} (target <= 0.5); {out['turns']} turns, "
          f"{out['seconds']} s, config {out['config_hash']}, model {out['model']}")
    path = a.run / ("voice.json" if a.seed == 0 else f"voice_seed{a.seed}.json")  # another draw keeps its own file
    write_whole(path, json.dumps(out, indent=2, default=float) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
