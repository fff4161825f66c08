"""DPO on best-of-N pairs, and activation capping, judged on held-out personas by what was not the reward.

One run, all figures measured in it:
  1. personas: examples/personas_movies.jsonl plus the hand-written genre personas below, split
     into training and held-out personas (`simulator.training.split_personas`, --held-out, --seed);
  2. pairs: best-of-N sessions of the training personas' users (embedded SmolLM2; --reward structured: the
     structured judge's rules + alignment + faithfulness, ranking: the ratings' order against the card +
     alignment + faithfulness, or rules: the structured judge's rules + alignment, faithfulness held out);
     from turn 1 on an item rated earlier is shown again, in these sessions and the arms' (RESHOW_FROM), so
     the line-to-line rule L3 can fire (runs before it are not comparable on line-to-line);
  3. DPO: a LoRA adapter trained on those pairs (TRL, CPU), converted to a GGUF adapter;
  4. arms on the held-out personas' users, each over --runs runs (session seeds differ by run):
     base (N=1), best-of-N, DPO (N=1), DPO + best-of-N -- embedded (llama.cpp, grammar);
     no cap and each of --caps -- transformers backend with the persona axis from the training
     personas (`simulator.steering`), N=1;
  5. per arm: the metrics of `evals.validity.consistency` (structured prompt-to-line, rank and utterance
     inconsistency, unfaithful and unparseable lines, Q&A, acceptance, rating spread, drift ratio);
     result.json's "reward" names the ones the reward contains (the others are held out); ratios to the
     base arm with paired bootstrap CIs over users;
  6. speed: training time; tokens/s of tuned vs untuned, through the backend each is served by.

    nice -n 15 .venv/bin/python benchmarks/dpo_consistency.py [--held-out 2] [--train-users 2] [--eval-users 2]
        [--turns 3] [--n 4] [--runs 2] [--epochs 1] [--max-steps -1] [--caps 0,0.5,1] [--threads 1]
        [--reward structured|ranking|rules] [--out runs/dpo_consistency]
    ... --adapter RUN [--adapter RUN2] [--eval-users 6] [--caps '']
        evaluates the DPO adapters earlier runs of this benchmark trained (RUN/dpo/adapter.gguf; the same
        held-out personas are required), each at N=1 against base, with no new pairs or training: more
        held-out users for the same adapters
    ... --pairs RUN [--epochs 3] [--eval-users 6] [--caps '']
        trains a new adapter on an earlier run's pairs.jsonl (the same held-out personas are required) with
        other training settings, and compares it with base at N=1 (no best-of-N arms): e.g. more epochs

Prints each stage's figures as they are measured and writes OUT/result.json (updated after each stage).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from pathlib import Path

from evals.commands.simulate import load_catalog
from evals.validity.consistency import arm_report, paired_ratio
from personas.card import PersonaCard, read_personas
from simulator import PopularityRecommender, SessionSettings, sample_users
from simulator.batch import run_sessions
from simulator.llm import create_backend, create_client
from simulator.training import RESHOW_FROM


ROOT = Path(__file__).resolve().parents[1]

#: the metrics each reward contains (labelled as the reward's own; the others are held out)
REWARD_METRICS = {"structured": ["structured_p2l_inconsistency", "structured_l2l_inconsistency", "unfaithful"],
                  "ranking": ["rank_inconsistency", "unfaithful"],
                  "rules": ["structured_p2l_inconsistency", "structured_l2l_inconsistency"]}  # faithfulness held out
HEADLINE = ("structured_p2l_inconsistency", "rank_inconsistency", "utterance_inconsistency", "unfaithful",
            "acceptance", "rating_spread")


def _facts(job: str, jobs: list[str], age: str) -> list[dict]:
    return [{"key": "job", "question": "What is your job?", "value": job, "choices": jobs, "evidence": []},
            {"key": "age group", "question": "How old are you?", "value": age,
             "choices": ["18-29", "30-39", "40-49", "50+"], "evidence": []}]


#: Hand-written genre personas (more personas make the persona split and the drift ratio meaningful).
EXTRA = [
    dict(id="noir-detective", name="Walt", summary="A 58-year-old retired detective who watches crime films and "
         "mysteries. Cartoons and musicals bore him.", likes=["Crime", "Film-Noir", "Mystery"],
         dislikes=["Animation", "Musical", "Children's"], facts=_facts("retired detective", ["retired detective", "pilot", "baker", "nurse"], "50+")),
    dict(id="horror-student", name="Zoe", summary="A 20-year-old film student who lives for horror and thrillers. "
         "She finds romances and family films sappy.", likes=["Horror", "Thriller"],
         dislikes=["Romance", "Children's", "Musical"], facts=_facts("student", ["student", "lawyer", "farmer", "chef"], "18-29")),
    dict(id="western-rancher", name="Hank", summary="A 49-year-old rancher who loves westerns and war films. "
         "He avoids sci-fi and fantasy.", likes=["Western", "War", "Adventure"], dislikes=["Sci-Fi", "Fantasy"],
         facts=_facts("rancher", ["rancher", "teacher", "engineer", "dentist"], "40-49")),
    dict(id="doc-teacher", name="Ana", summary="A 38-year-old history teacher who prefers documentaries and "
         "dramas. Violent action films put her off.", likes=["Documentary", "Drama"], dislikes=["Action", "Horror"],
         facts=_facts("teacher", ["teacher", "nurse", "pilot", "chef"], "30-39")),
]


def personas() -> list[PersonaCard]:
    cards = read_personas(ROOT / "examples" / "personas_movies.jsonl")
    base = cards[0].model_dump()
    for extra in EXTRA:
        cards.append(PersonaCard.model_validate({**base, **extra, "traits": base["traits"]}))
    return cards


def stamp(result: dict, out: Path, msg: str) -> None:
    (out / "result.json").write_text(json.dumps(result, indent=2, default=str))
    print(msg, flush=True)


async def sessions(users, items, pop, *, backend: str, options: dict, turns: int, n: int, seed: int, runs: int,
                   reward: str, qa: bool = True) -> tuple[list, dict]:
    llm = create_client(backend, concurrency=1, **options)  # no cache: every arm really runs its model
    started = time.perf_counter()
    trs = []
    try:
        for r in range(runs):
            trs += await run_sessions(users, lambda u: PopularityRecommender(items, pop), turns=turns, seed=seed + r,
                                      llm=llm, settings=SessionSettings(best_of=n, qa_turns=None if qa else [], reward=reward,
                                                                    reshow_from=RESHOW_FROM),
                                      in_flight=1, show_progress=False)
    finally:
        await llm.aclose()
    secs = time.perf_counter() - started
    return trs, {"seconds": round(secs, 1), "tokens_out": llm.usage.tokens_out, "requests": llm.usage.requests,
                 "failures": llm.usage.failures, "model": llm.model}


def train_adapter(args, result: dict, out: Path, train, items, pop, emb: dict) -> Path:
    """Steps 2-3: best-of-N pairs from the training personas' users, then DPO; the GGUF adapter's path."""
    from simulator.preferences import write_pair_set
    from simulator.training import collect_pairs

    if args.pairs:  # an earlier run's pair set (main() checked that its held-out personas are this run's)
        src = Path(args.pairs) / "pairs.jsonl"
        pairs = Path(shutil.copyfile(src, out / "pairs.jsonl"))
        result["pairs"] = {"n": sum(1 for ln in pairs.read_text().splitlines() if ln.strip()), "from": str(src)}
        stamp(result, out, f"pairs: {result['pairs']['n']} from {src} (not collected again)")
        return _train(args, result, out, pairs)

    # 2. pairs from the training personas
    t0 = time.perf_counter()
    train_users = sample_users(train, args.train_users * len(train), args.seed)

    async def collect():
        llm = create_client("embedded", concurrency=1, **emb)
        try:
            return await collect_pairs(train_users, lambda u: PopularityRecommender(items, pop), llm=llm,
                                       turns=args.turns, best_of=args.n, seed=args.seed, show_progress=False,
                                       reward=args.reward)
        finally:
            await llm.aclose()

    rows, _ = asyncio.run(collect())
    pairs = write_pair_set(rows, out / "pairs.jsonl")
    result["pairs"] = {"n": len(rows), "seconds": round(time.perf_counter() - t0, 1)}
    stamp(result, out, f"pairs: {len(rows)} from {len(train_users)} training users in {result['pairs']['seconds']} s")
    return _train(args, result, out, pairs)


def _train(args, result: dict, out: Path, pairs: Path) -> Path:
    """Step 3: DPO on the pair set, then the GGUF adapter's path."""
    from personas.infra.assets import smollm2_gguf
    from simulator.lora_gguf import convert
    from simulator.training import TrainSettings, train_dpo

    settings = TrainSettings(seed=args.seed, epochs=args.epochs, max_steps=args.max_steps, learning_rate=args.lr,
                             threads=args.threads, save_steps=50)
    tr = train_dpo(pairs, out / "dpo", settings, show_progress=False)
    gguf = convert(tr.adapter, smollm2_gguf(), out / "dpo" / "adapter.gguf")
    result["training"] = {"seconds": tr.seconds, "steps": tr.steps, "pairs": tr.pairs, "tokens": tr.tokens,
                          "tokens_per_s": round(tr.tokens / tr.seconds, 1) if tr.seconds else None,
                          "final_loss": tr.final_loss, "reward_accuracy": tr.reward_accuracy}
    stamp(result, out, f"training: {tr.steps} steps on {tr.pairs} pairs in {tr.seconds} s (loss {tr.final_loss})")

    return gguf


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--held-out", type=int, default=2)
    ap.add_argument("--train-users", type=int, default=2, help="users per training persona")
    ap.add_argument("--eval-users", type=int, default=2, help="users per held-out persona")
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--cap-turns", type=int, default=2)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--max-steps", type=int, default=-1)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--caps", default="0,0.5,1")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reward", choices=REWARD_METRICS, default="structured")
    ap.add_argument("--adapter", action="append", default=[], help="an earlier run's --out folder: evaluate its "
                    "adapter instead of collecting pairs and training (repeatable)")
    ap.add_argument("--pairs", help="an earlier run's --out folder: train on its pairs.jsonl instead of collecting "
                    "pairs (same held-out personas required); the best-of-N arms are then left out")
    ap.add_argument("--out", default="runs/dpo_consistency")
    args = ap.parse_args()
    if args.pairs and args.adapter:
        sys.exit("error: --pairs trains a new adapter and --adapter evaluates old ones: give one of them")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from personas.infra.assets import smollm2_gguf
    from personas.embed import Embedder
    from simulator.llm.backends.hf_weights import load_causal_lm
    from simulator.steering import persona_axis, save_axis
    from simulator.training import split_personas

    cards = personas()
    by_id = {c.id: c for c in cards}
    train, held = split_personas(cards, held_out=args.held_out, seed=args.seed)
    items, pop = load_catalog("ml-100k")
    result: dict = {"args": vars(args), "reshow_from": RESHOW_FROM,
                    "train_personas": [c.id for c in train], "held_out_personas": [c.id for c in held],
                    "reward": {"kind": args.reward, "metrics_in_reward": REWARD_METRICS[args.reward]}}
    stamp(result, out, f"split: train {result['train_personas']} | held out {result['held_out_personas']}")

    emb = {"n_threads": args.threads}
    if args.pairs:
        args.reward = earlier_run_reward(Path(args.pairs), "pairs.jsonl", "--pairs", result)  # whatever --reward said
        result["reward"] = {"kind": args.reward, "metrics_in_reward": REWARD_METRICS[args.reward]}
    if args.adapter:
        adapters = {}
        result["reward"] = {"kind": None, "metrics_in_reward": "each adapter's own (see adapters)"}
        for run in map(Path, args.adapter):
            kind = earlier_run_reward(run, "dpo/adapter.gguf", "--adapter", result)
            name = f"dpo_{kind}" if f"dpo_{kind}" not in adapters else f"dpo_{kind}_{run.name}"
            adapters[name] = (run / "dpo" / "adapter.gguf", kind)
        result["adapters"] = {name: {"gguf": str(g), "reward": k} for name, (g, k) in adapters.items()}
        stamp(result, out, f"evaluating {', '.join(f'{n} ({g})' for n, (g, _) in adapters.items())}")
    else:
        gguf = train_adapter(args, result, out, train, items, pop, emb)
        adapters = {"dpo": (gguf, args.reward)}

    # 4. arms on held-out users
    eval_users = sample_users(held, args.eval_users * len(held), args.seed + 1000)
    embed = Embedder(show_progress=False).embed
    arms, users_of = {}, {}
    plan = [("base", "embedded", emb, 1, args.turns)]
    selection = not (args.adapter or args.pairs)  # the best-of-N arms study selection; a rerun of training leaves them out
    if selection:
        plan.append((f"best_of_{args.n}", "embedded", emb, args.n, args.turns))
    for name, (gguf, _) in adapters.items():
        lora = {**emb, "lora_path": str(gguf)}
        plan.append((name, "embedded", lora, 1, args.turns))
        if selection:
            plan.append((f"{name}+best_of_{args.n}", "embedded", lora, args.n, args.turns))
    caps = [float(c) for c in args.caps.split(",") if c.strip()]
    if caps:
        tok, lm = load_causal_lm(smollm2_gguf())
        axis = persona_axis(lm, tok, train)
        del lm
        axis_path = save_axis(axis, out / "axis.json")
        result["axis"] = {"layer": axis.layer, "default_proj": axis.default_proj, "role_proj": axis.role_proj}
        plan.append(("tf_no_cap", "transformers", {}, 1, args.cap_turns))
        plan += [(f"tf_cap_{c:g}", "transformers", {"axis": str(axis_path), "cap": c}, 1, args.cap_turns) for c in caps]
    result["arms"] = {}
    for name, backend, options, n, turns in plan:
        trs, cost = asyncio.run(sessions(eval_users, items, pop, backend=backend, options=options, turns=turns, n=n,
                                         seed=args.seed, runs=args.runs, reward=args.reward))
        summary, users_of[name] = arm_report(trs, by_id, embed, seed=args.seed)
        arms[name] = summary
        result["arms"][name] = {"cost": cost, **summary}
        ref = "base" if backend == "embedded" else "tf_no_cap"
        if name != ref and ref in users_of:
            result["arms"][name]["vs_" + ref] = {m: paired_ratio(users_of[name][m], users_of[ref][m], seed=args.seed)
                                                 for m in HEADLINE}
        m = {k: summary[k]["mean"] for k in (*HEADLINE, "qa")}
        mark = marks(result, name)
        stamp(result, out, f"arm {name}: " + ", ".join(f"{k}{'*' * (k in mark)} {v:.3f}" if v is not None
                                                       else f"{k} -" for k, v in m.items())
              + f", drift {summary['drift'].get('ratio_within_over_between')}, lines {summary['n_lines']}, "
              f"{cost['seconds']} s")

    if args.adapter:
        print_ratios(result)
        return
    # 6. speed of the tuned model through the backend it is served by
    from benchmarks.adapter_speed import compare  # the same interleaved measurement as the speed benchmark

    lora = {**emb, "lora_path": str(adapters["dpo"][0])}
    r = compare(create_backend("embedded", **emb), create_backend("embedded", **lora), rounds=3, max_tokens=48)
    speed = {"embedded_base": r["base"]["tokens_per_s"], "embedded_dpo": r["tuned"]["tokens_per_s"]}
    speed["ratio_tuned_over_untuned"] = speed["embedded_dpo"] / speed["embedded_base"] if speed["embedded_base"] else None
    result["tokens_per_s"] = speed
    stamp(result, out, "tokens/s: " + json.dumps({k: round(v, 1) if v else v for k, v in speed.items()}))

    print_ratios(result)


def earlier_run_reward(run: Path, needs: str, option: str, result: dict) -> str:
    """The reward kind of an earlier run of this benchmark that ``option`` names, after checking that it holds
    result.json and ``needs`` and that it held out this run's personas (else one error line)."""
    if not (run / "result.json").is_file() or not (run / needs).is_file():
        sys.exit(f"error: {option} {run}: not a run of this benchmark (no result.json and {needs})")
    done = json.loads((run / "result.json").read_text())
    if sorted(done["held_out_personas"]) != sorted(result["held_out_personas"]):
        sys.exit(f"error: {run / 'result.json'}: it held out personas {done['held_out_personas']}, not this run's "
                 f"{result['held_out_personas']}")
    return done.get("reward", {}).get("kind") or "structured"  # runs before --reward used the structured one


def marks(result: dict, arm: str) -> set[str]:
    """The metrics the arm's reward contains (an evaluated adapter's own reward, else this run's; none for the
    arms nothing was selected or trained for: base and the transformers arms)."""
    kind = result.get("adapters", {}).get(arm, {}).get("reward", result["reward"]["kind"])
    if arm == "base" or arm.startswith("tf_") or kind is None:
        return set()
    return set(REWARD_METRICS[kind])


def print_ratios(result: dict) -> None:
    """The ratios measured in this run (* = a metric the arm's reward contains; the others are held out)."""
    print("* marks a metric the arm's reward contains")
    for name, arm in result["arms"].items():
        mark = marks(result, name)
        for ref in ("vs_base", "vs_tf_no_cap"):
            if ref in arm:
                print(f"{name} {ref}: " + "; ".join(
                    f"{k}{'*' * (k in mark)} x{_r(arm[ref][k]['ratio'])} CI {[_r(c) for c in arm[ref][k]['ci95'] or []]}"
                    for k in HEADLINE))


def _r(x):
    return None if x is None else round(x, 3)


if __name__ == "__main__":
    main()
