"""Consistency training on a voice that can be faithful (issue 34, part 3): does selecting or DPO-training the
grounded users' planned voice toward a reward that reads the line carry to faithfulness, a judge it never read?

    .venv/bin/python -m benchmarks.voice_dpo runs/level_default [--train-turns 80] [--eval-turns 80] [--n 4]
        [--epochs 1] [--threads 2] [--seed 0] [--out runs/voice_dpo]

Reads a campaign folder's grounded turns (events.jsonl, as `benchmarks/voice.py` replays them) and splits its
personas in two, seeded: the training personas' turns give the pairs, the held-out personas' turns judge the arms.
Every candidate is `GroundedUser.propose` with the planned voice (`simulator.voice`) at the user's temperature
(0.7): the decision is drawn before the voice speaks, so the N candidates of a turn share it and differ only in the
sentence.

- **Reward** (what selection and DPO read): the utterance judge's margin, cos(line, "I enjoy <likes> films.") minus
  cos(line, "I enjoy <dislikes> films.") with MiniLM, the continuous form of
  `evals.validity.consistency.utterance_inconsistency` (which is 1 where the margin is < 0). It reads the line and
  the persona card, never the decision's titles.
- **Held-out judge**: the structured faithfulness check (`simulator.faithfulness`, F1-F5: names the choice, no
  passed-over title, sentiment agrees, a reason from the evidence, not degenerate). Never read by the reward, the
  selection or the pairs.
- **Selection** (training turns): faithfulness of the reward's best of N against the mean faithfulness of the N
  candidates (what a random pick gets), paired over turns.
- **DPO**: pairs (the best candidate, each one whose reward is lower by more than ``--min-gap``) on the planned
  voice's own prompt; `simulator.training.train_dpo` (LoRA, CPU), converted to a GGUF adapter for llama.cpp.
- **Arms** (held-out personas' turns, N = 1, the same seeds): base against DPO. Per arm: faithful share (held out)
  with a Wilson CI, the reward's mean and its binary judge's inconsistency (its own). DPO minus base, paired over
  turns, with a bootstrap CI.

Writes OUT/result.json (updated after each stage; config hash of the campaign, model, seed) and OUT/pairs.jsonl.
A bad run folder is one error line and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.voice import _share, grounded_turns, say
from evals.campaign.driver import CampaignError, run_config_hash
from evals.campaign.events import EventLogError
from evals.commands.errors import EXIT_CODE, emit
from personas.infra.files import write_whole
from simulator.faithfulness import faithfulness


def anchors(embed, cards: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{persona id: (like anchor, dislike anchor)}: the utterance judge's two sentences, embedded."""
    ids = sorted(cards)
    v = embed([f"I enjoy {', '.join(cards[p].likes)} films." for p in ids]
              + [f"I enjoy {', '.join(cards[p].dislikes)} films." for p in ids])
    return {p: (v[i], v[len(ids) + i]) for i, p in enumerate(ids)}


def margins(embed, anchor: dict, persona_ids: list[str], lines: list[str]) -> np.ndarray:
    """The reward of each line: cos to its persona's like anchor minus cos to its dislike anchor."""
    u = embed(lines)
    return np.array([float(x @ anchor[p][0] - x @ anchor[p][1]) for x, p in zip(u, persona_ids)])


def split_personas(cards: dict, seed: int) -> tuple[list[str], list[str]]:
    """(training, held-out) persona ids: a seeded half of them held out (at least one on each side)."""
    ids = sorted(cards)
    if len(ids) < 2:
        raise ValueError(f"{len(ids)} persona(s): a held-out persona needs at least two")
    held = sorted(np.random.default_rng([seed, 34]).choice(ids, size=len(ids) // 2, replace=False).tolist())
    return [p for p in ids if p not in held], held


def _faithful(cand) -> float:
    """1.0 for a faithful line, 0.0 otherwise (an unparseable or failed line counts as unfaithful)."""
    if not cand.turn.ok:
        return 0.0
    f = faithfulness(cand.turn, evidence=cand.turn.evidence)
    return float(bool(f.faithful))


def paired(diff: np.ndarray, seed: int, n_boot: int = 2000) -> dict:
    """The mean of per-turn differences with its bootstrap CI (`evals.stats.bootstrap.mean_ci`) and the turns."""
    from evals.stats.bootstrap import mean_ci

    return {**mean_ci(diff, n_boot=n_boot, seed=seed), "n": int(len(diff))}


def stamp(result: dict, out: Path, line: str) -> None:
    print(line, flush=True)
    write_whole(out / "result.json", json.dumps(result, indent=2, default=float) + "\n")


async def candidates(grounding, events, cards, items, n: int, **llm_options) -> tuple[list[list], str]:
    """([turn][k] candidates of each event's decision, k = 0..n-1 each its own seed; the model's name), on a fresh
    embedded client with ``llm_options`` (threads, a LoRA adapter) and no response cache."""
    from simulator.llm import create_client

    llm = create_client("embedded", concurrency=1, **llm_options)
    try:
        out = []
        for e in events:
            out.append([(await say(llm, grounding, e, cards, items, "planned", k))[0] for k in range(n)])
        return out, llm.model
    finally:
        await llm.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a campaign output folder with grounded turns in events.jsonl")
    ap.add_argument("--train-turns", type=int, default=80)
    ap.add_argument("--eval-turns", type=int, default=80)
    ap.add_argument("--n", type=int, default=4, help="candidates per training turn")
    ap.add_argument("--min-gap", type=float, default=0.02, help="smallest reward gap that makes a pair")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/voice_dpo"))
    a = ap.parse_args()
    try:
        cfg, events, grounding, cards, items = grounded_turns(a.run)
        train_ids, held_ids = split_personas(cards, a.seed)
    except (CampaignError, EventLogError, ValueError, OSError) as exc:  # bad input: one line, exit code 2
        emit(str(exc))  # `evals.commands.errors`: the house's one error line, nothing written
        raise SystemExit(EXIT_CODE) from None
    from personas.embed import Embedder
    from personas.infra.assets import smollm2_gguf
    from simulator.lora_gguf import convert
    from simulator.preferences import write_pair_set
    from simulator.training import TrainSettings, train_dpo

    a.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(a.seed)

    def draw(ids: list[str], k: int) -> list:
        pool = [e for e in events if e.persona_id in ids]
        return [pool[i] for i in sorted(rng.choice(len(pool), size=min(k, len(pool)), replace=False).tolist())]

    train_ev, eval_ev = draw(train_ids, a.train_turns), draw(held_ids, a.eval_turns)
    result: dict = {
        "run": str(a.run), "config_hash": run_config_hash(a.run), "config_hash_now": cfg.config_hash(), "seed": a.seed,
        "args": {k: str(v) for k, v in vars(a).items()}, "train_personas": train_ids, "held_out_personas": held_ids,
        "reward": "utterance margin (MiniLM): cos(line, likes anchor) - cos(line, dislikes anchor)",
        "held_out_judge": "faithfulness (simulator.faithfulness, F1-F5)"}
    stamp(result, a.out, f"personas: train {train_ids} | held out {held_ids}; turns {len(train_ev)} / {len(eval_ev)}")
    embed = Embedder(show_progress=False).embed
    anchor = anchors(embed, cards)

    # 1. candidates of the training turns, the reward's selection and the pairs
    t0 = time.perf_counter()
    groups, result["model"] = asyncio.run(candidates(grounding, train_ev, cards, items, a.n, n_threads=a.threads))
    rewards = [margins(embed, anchor, [e.persona_id] * a.n, [c.turn.utterance or "" for c in g])
               for e, g in zip(train_ev, groups)]
    faithful = np.array([[_faithful(c) for c in g] for g in groups])  # [turns, n]
    best = np.array([int(np.argmax(r)) for r in rewards])
    picked = faithful[np.arange(len(best)), best]
    rows = []
    for t, (e, g, r, b) in enumerate(zip(train_ev, groups, rewards, best)):
        top = g[b]
        for k, c in enumerate(g):
            if k != b and c.turn.ok and top.turn.ok and r[b] - r[k] > a.min_gap:
                rows.append({"prompt": top.messages, "chosen": [{"role": "assistant", "content": top.turn.raw}],
                             "rejected": [{"role": "assistant", "content": c.turn.raw}],
                             "reward_chosen": float(r[b]), "reward_rejected": float(r[k]), "user_id": e.user_id,
                             "turn": e.turn, "seed": top.turn.call_seed, "model": top.turn.model,
                             "persona_id": e.persona_id,
                             "faithful_chosen": faithful[t, b], "faithful_rejected": faithful[t, k]})
    pairs = write_pair_set(rows, a.out / "pairs.jsonl")
    fc = np.array([p["faithful_chosen"] for p in rows])
    fr = np.array([p["faithful_rejected"] for p in rows])
    result["selection"] = {
        "turns": len(groups), "candidates": a.n, "seconds": round(time.perf_counter() - t0, 1),
        "faithful_all_candidates": round(float(faithful.mean()), 4),
        "turns_with_both_faithful_and_not": int(((faithful.max(1) == 1) & (faithful.min(1) == 0)).sum()),
        "faithful_reward_best": round(float(picked.mean()), 4),
        "best_minus_mean_of_n": paired(picked - faithful.mean(1), a.seed),
        "pairs": len(rows), "pairs_chosen_faithful": round(float(fc.mean()), 4) if rows else None,
        "pairs_rejected_faithful": round(float(fr.mean()), 4) if rows else None,
        "pairs_where_faithfulness_differs": int((fc != fr).sum()),
        "pairs_preferring_the_faithful_line": int((fc > fr).sum()),
    }
    s = result["selection"]
    stamp(result, a.out, f"selection: {s['turns']} turns x {a.n}: faithful {s['faithful_all_candidates']}, reward's "
          f"best {s['faithful_reward_best']} (best - mean of n {s['best_minus_mean_of_n']}); {s['pairs']} pairs, "
          f"{s['pairs_where_faithfulness_differs']} differ in faithfulness, {s['pairs_preferring_the_faithful_line']}"
          f" prefer the faithful line; {s['seconds']} s")
    if not rows:
        stamp(result, a.out, "no pair: nothing to train")
        return

    # 2. DPO on the pairs
    settings = TrainSettings(seed=a.seed, epochs=a.epochs, threads=a.threads, save_steps=50, max_length=768)
    tr = train_dpo(pairs, a.out / "dpo", settings, show_progress=False)
    gguf = convert(tr.adapter, smollm2_gguf(), a.out / "dpo" / "adapter.gguf")
    result["training"] = {"seconds": tr.seconds, "steps": tr.steps, "pairs": tr.pairs, "final_loss": tr.final_loss,
                          "reward_accuracy": tr.reward_accuracy}
    stamp(result, a.out, f"training: {tr.steps} steps on {tr.pairs} pairs in {tr.seconds} s "
          f"(loss {tr.final_loss}, reward accuracy {tr.reward_accuracy})")

    # 3. arms on the held-out personas' turns, N = 1, the same seeds
    arms = {}
    for name, opts in (("base", {}), ("dpo", {"lora_path": str(gguf)})):
        t0 = time.perf_counter()
        said, _ = asyncio.run(candidates(grounding, eval_ev, cards, items, 1, n_threads=a.threads, **opts))
        f = np.array([_faithful(g[0]) for g in said])
        r = margins(embed, anchor, [e.persona_id for e in eval_ev], [g[0].turn.utterance or "" for g in said])
        arms[name] = {"faithful": f, "reward": r}
        result.setdefault("arms", {})[name] = {
            "faithful": _share([bool(x) for x in f]), "reward_mean": round(float(r.mean()), 4),
            "utterance_inconsistency": round(float((r < 0).mean()), 4), "seconds": round(time.perf_counter() - t0, 1),
            "examples": [g[0].turn.utterance for g in said[:6]]}
        stamp(result, a.out, f"arm {name}: faithful {result['arms'][name]['faithful']['share']:.3f}, reward "
              f"{result['arms'][name]['reward_mean']}, utterance inconsistency "
              f"{result['arms'][name]['utterance_inconsistency']}")
    result["dpo_minus_base"] = {"faithful (held out)": paired(arms["dpo"]["faithful"] - arms["base"]["faithful"],
                                                              a.seed),
                                "reward (own)": paired(arms["dpo"]["reward"] - arms["base"]["reward"], a.seed)}
    stamp(result, a.out, f"DPO - base: {result['dpo_minus_base']}")


if __name__ == "__main__":
    main()
