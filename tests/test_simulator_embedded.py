"""A few real turns on the embedded SmolLM2, and `personasim simulate` end to end (offline)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from personas.card import read_personas
from simulator import PopularityRecommender, SessionSettings, run_session, sample_pool, sample_users, summarize
from simulator.llm import create_client

PERSONAS = Path(__file__).parent / "data" / "personas_movies.jsonl"


def catalog():
    from evals.commands.simulate import load_catalog

    return load_catalog("ml-100k")


async def test_real_session_on_the_embedded_model(tmp_path):
    items, pop = catalog()
    assert len(items) == 1682 and items[0].title == "Toy Story" and "Animation" in items[0].facets["genres"]
    profile = sample_users(read_personas(PERSONAS), 1, seed=0)[0]
    llm = create_client("embedded", cache_dir=tmp_path)
    try:
        tr = await run_session(profile, PopularityRecommender(items, pop), 2, 11, llm,
                               settings=SessionSettings(best_of=2, qa_turns=[0]), pool=sample_pool(items, pop, 6, 11))
        again = await run_session(profile, PopularityRecommender(items, pop), 2, 11, llm,
                                  settings=SessionSettings(best_of=2, qa_turns=[0]), pool=sample_pool(items, pop, 6, 11))
    finally:
        await llm.aclose()
    assert tr.model.startswith("SmolLM2") and len(tr.turns) == 2
    assert tr.onboarding is not None and (tr.onboarding.ok or tr.onboarding.error)
    for t in tr.turns:
        assert len(t.slate) == 5 and len(t.candidate_rewards) == 2 and t.layers == profile.layers()
        if t.ok:  # a valid answer only holds slate ids and 1..5 ratings
            assert set(t.ratings) == {i.id for i in t.slate} and set(t.chosen) <= set(t.ratings)
            assert all(r in range(1, 6) for r in t.ratings.values()) and t.consistency["prompt_to_line"] in (0.0, 1.0)
        else:
            assert t.error
    assert tr.turns[0].qa is not None and tr.turns[0].qa.expected in tr.turns[0].qa.choices
    assert sum(t.ok for t in tr.turns) >= 1
    # same seed, same everything (the second run is served from the cache)
    assert [t.model_dump(exclude={"latency_s"}) for t in again.turns] == [t.model_dump(exclude={"latency_s"}) for t in tr.turns]
    assert llm.usage.cache_hits >= 5
    assert summarize([tr])["n_turns"] == 2


def test_simulate_command_writes_transcripts_and_consistency(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "evals.cli", "simulate", "--personas", str(PERSONAS), "--users", "2", "--turns", "1",
           "--backend", "embedded", "--best-of", "2", "--catalog", "ml-100k", "--seed", "3", "--pool-size", "0", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "consistency.json").read_text())
    assert {"prompt_to_line", "line_to_line", "qa", "n_users", "n_turns", "best_of"} <= set(summary)
    assert summary["n_users"] == 2 and summary["best_of"] == 2 and summary["n_turns"] == 2
    assert summary["model"].startswith("SmolLM2") and summary["seed"] == 3 and len(summary["config_hash"]) == 12
    rows = [json.loads(line) for line in (out / "transcripts.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(len(r["turns"]) == 1 for r in rows)
    assert all(t["meta"]["config_hash"] == summary["config_hash"] and t["layers"]["context"] for r in rows for t in r["turns"])
    assert (out / "preferences.jsonl").exists()
    assert "prompt-to-line" in proc.stdout


def test_simulate_command_bad_input_is_one_line(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    proc = subprocess.run([sys.executable, "-m", "evals.cli", "simulate", "--personas", str(empty), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "contains no personas" in proc.stderr and "Traceback" not in proc.stderr
