"""Activation capping (simulator/steering.py) on the real SmolLM2-135M: the axis, the hook, the backend."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from personas.infra.assets import smollm2_gguf
from personas.card import read_personas
from simulator.llm.backends.hf_transformers import TransformersBackend
from simulator.llm.backends.hf_weights import load_causal_lm
from simulator.llm.errors import LLMConfigError
from simulator.steering import (DEFAULT_SYSTEM, install_cap, load_axis, persona_axis, projections, role_system,
                                save_axis)

CARDS = read_personas(Path(__file__).parent / "data" / "personas_movies.jsonl")
QUESTIONS = ("Tell me a little about yourself.", "What kind of film would you pick for tonight, and why?")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    tok, lm = load_causal_lm(smollm2_gguf())
    lm.eval()
    folder = tmp_path_factory.mktemp("smollm2")
    lm.save_pretrained(folder)
    tok.save_pretrained(folder)
    return tok, lm, folder


@pytest.fixture(scope="module")
def axis(model):
    tok, lm, _ = model
    return persona_axis(lm, tok, CARDS[:2], layer=15, questions=QUESTIONS)  # CARDS[2] stays unseen


def _last_logits(lm, tok, system: str) -> torch.Tensor:
    ids = tok.apply_chat_template([{"role": "system", "content": system}, {"role": "user", "content": QUESTIONS[1]}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        return lm(**ids).logits[0, -1].float()


def test_axis_separates_an_unseen_persona_from_the_default_assistant(model, axis):
    tok, lm, _ = model
    assert axis.layer == 15 and abs(float(np.linalg.norm(axis.vector)) - 1.0) < 1e-5
    assert axis.default_proj > axis.role_proj
    unseen = projections(lm, tok, role_system(CARDS[2]), axis, QUESTIONS).mean()
    default = projections(lm, tok, DEFAULT_SYSTEM, axis, QUESTIONS).mean()
    assert abs(default - axis.default_proj) < 1e-3
    # the persona the axis never saw sits on the role side of the midpoint
    assert unseen < axis.threshold(0.5), (unseen, axis.role_proj, axis.default_proj)


def test_cap_bounds_the_projection_changes_logits_and_comes_off(model, axis):
    tok, lm, _ = model
    before = _last_logits(lm, tok, DEFAULT_SYSTEM)
    loose = install_cap(lm, axis, 1e6)  # never binds: the output must be exactly the same
    try:
        assert torch.equal(_last_logits(lm, tok, DEFAULT_SYSTEM), before) and loose.calls > 0
    finally:
        loose.remove()
    hook = install_cap(lm, axis, 0.0)
    try:
        capped = projections(lm, tok, DEFAULT_SYSTEM, axis, QUESTIONS)
        changed = _last_logits(lm, tok, DEFAULT_SYSTEM)
    finally:
        hook.remove()
    assert capped.max() <= axis.threshold(0.0) + 1e-3  # the mean of capped positions cannot exceed the cap
    assert (changed - before).abs().max() > 0.1
    assert torch.equal(_last_logits(lm, tok, DEFAULT_SYSTEM), before)


def test_backend_with_cap_and_its_bad_inputs(model, axis, tmp_path):
    _, _, folder = model
    path = save_axis(axis, tmp_path / "axis.json")
    assert load_axis(path).layer == axis.layer
    plain = TransformersBackend(folder)
    capped = TransformersBackend(folder, axis=path, cap=0.0)
    assert "+cap0@L15:" in capped.model  # the axis file's content tag follows
    msgs = [{"role": "system", "content": DEFAULT_SYSTEM}, {"role": "user", "content": QUESTIONS[1]}]
    a, b = plain._first_token_sync(msgs, 5), capped._first_token_sync(msgs, 5)
    assert dict(a) != dict(b)

    with pytest.raises(LLMConfigError, match="both 'axis'"):
        TransformersBackend(folder, axis=path)
    data = json.loads(path.read_text())
    data["fingerprint"]["hidden_size"] = 1024
    (tmp_path / "other.json").write_text(json.dumps(data))
    with pytest.raises(LLMConfigError, match="other.json: persona axis computed on another model"):
        TransformersBackend(folder, axis=tmp_path / "other.json", cap=0.5)
    (tmp_path / "bad.json").write_text('{"kind": "personasim-persona-axis", "layer": 3}')
    with pytest.raises(ValueError, match="bad.json: field 'default_proj' is missing"):
        load_axis(tmp_path / "bad.json")
