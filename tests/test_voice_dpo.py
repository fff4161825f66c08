"""The voice-DPO benchmark's parts (benchmarks/voice_dpo.py): its reward reads the line against the persona card
(MiniLM), its persona split holds out a seeded half, and a bad run folder is one error line with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.voice_dpo import anchors, margins, split_personas
from personas.card import PersonaCard

ROOT = Path(__file__).resolve().parents[1]


def test_the_reward_prefers_a_line_about_the_liked_genres():
    from personas.embed import Embedder

    embed = Embedder(show_progress=False).embed
    cards = {"p": PersonaCard(id="p", name="p", summary="s", likes=["horror", "thriller"],
                              dislikes=["musical", "romance"])}
    r = margins(embed, anchors(embed, cards), ["p", "p"],
                ["A scary horror thriller, just what I wanted tonight.",
                 "A sweet romantic musical, just what I wanted tonight."])
    assert r[0] > 0 > r[1]


def test_the_persona_split_is_a_seeded_half_and_refuses_one_persona():
    cards = {f"p{i}": None for i in range(5)}
    train, held = split_personas(cards, seed=0)
    assert sorted(train + held) == sorted(cards) and not set(train) & set(held) and len(held) == 2
    assert split_personas(cards, seed=0) == (train, held)
    assert any(split_personas(cards, seed=s)[1] != held for s in range(1, 6))
    with pytest.raises(ValueError, match="at least two"):
        split_personas({"p0": None}, seed=0)


def test_a_folder_that_is_no_campaign_is_one_error_line(tmp_path):
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "benchmarks.voice_dpo", str(tmp_path / "nothing"), "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nothing" in lines[0]
    assert not out.exists()


def test_a_benchmark_stamps_the_runs_config_hash_not_todays(tmp_path):
    """`run_config_hash`: the hash in the run folder's campaign.json (what the run was played under); a folder
    without one, or with a hash that is not a string, is a one-line CampaignError."""
    import json

    from evals.campaign.driver import CampaignError, run_config_hash

    with pytest.raises(CampaignError, match="no campaign.json"):
        run_config_hash(tmp_path)
    (tmp_path / "campaign.json").write_text(json.dumps({"config": {}, "config_hash": "d13fbbfa1aa7"}))
    assert run_config_hash(tmp_path) == "d13fbbfa1aa7"
    (tmp_path / "campaign.json").write_text(json.dumps({"config": {}, "config_hash": 7}))
    with pytest.raises(CampaignError, match="config_hash"):
        run_config_hash(tmp_path)
