"""Every registry's entries pass one shared contract, and adding an entry is one registration.

The kinds: rating rules (`simulator.rating_rules`), simulated-user variants (`simulator.variants`), A/B
metrics (`evals.campaign.metrics`) and LLM backends (`simulator.llm.registry`). Recommenders have their own
suite (`recsys.contract`, tests/test_recsys_contract.py). A new entry is checked here without a new test.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pandas as pd
import pytest

from evals.campaign.ab import ab_table
from evals.campaign.config import ConfigError, load_config
from evals.campaign.metrics import METRICS, Session, metric
from personas.infra.registry import Registry, UnknownName
from simulator import PopularityRecommender, SessionSettings, run_session, sample_users
from simulator.choice import ChoiceModel, decide
from simulator.evidence import EVIDENCE
from simulator.llm import LLMClient
from simulator.llm.backends.base import Backend
from simulator.llm.registry import BACKENDS
from simulator.rating_rules import RATING_RULES, rating_rule
from simulator.variants import USER_VARIANTS, make_user
from tests.test_simulator_grounded import PERSONA, _grounding


def test_a_registry_refuses_a_taken_name_and_names_the_known_ones():
    reg: Registry[int] = Registry("widget")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.add("a", 2)
    with pytest.raises(UnknownName, match=r"unknown widget 'b'; choose one of: a$"):
        reg["b"]
    assert reg.remove("a") == 1 and "a" not in reg and len(reg) == 0


# -- rating rules ------------------------------------------------------------------------------------------

def _fitted(cuts=(1.8, 2.7, 3.4, 4.2)) -> ChoiceModel:
    f = len(EVIDENCE)
    return ChoiceModel(kind="twin", features=list(EVIDENCE), mean=[0.0] * f, scale=[1.0] * f, like_coef=[1.0] * f,
                       like_intercept=0.0, rating_coef=[0.5, 0.5] + [0.1] * f, rating_intercept=0.0, rating_sd=0.6,
                       rating_cuts=list(cuts), take_level=-0.5, watched_coef=[0.2] * f, watched_intercept=0.3)


@pytest.mark.parametrize("name", RATING_RULES.names())
def test_every_rating_rule_keeps_the_contract(name):
    model = _fitted()
    cuts = model.rating_cutpoints(name)
    assert len(cuts) == 4 and all(a < b for a, b in zip(cuts, cuts[1:])), cuts
    grid = np.linspace(-1.0, 7.0, 81)
    ratings = model.rating(grid, name)
    assert ratings.min() == 1 and ratings.max() == 5 and (np.diff(ratings) >= 0).all()
    X = np.random.default_rng(0).normal(size=(6, len(EVIDENCE)))
    d = decide(model, X, user_mean=3.5, item_mean=np.full(6, 3.5), genres=[["Drama"]] * 6, context={},
               rng=np.random.default_rng(1), rating_rule=name)
    assert set(d.ratings.tolist()) <= {1, 2, 3, 4, 5}
    assert RATING_RULES[name].help


def test_a_new_rating_rule_is_one_registration(tmp_path):
    @rating_rule("lenient", "the expected rule with every cut half a star lower")
    def lenient(model):
        return tuple(c - 0.5 for c in RATING_RULES["expected"].cutpoints(model))
    try:
        test_every_rating_rule_keeps_the_contract("lenient")
        model, r = _fitted(), np.array([3.2])
        assert model.rating(r, "lenient")[0] == model.rating(r, "expected")[0] + 1
        assert _config(tmp_path, "grounding: {rating_rule: lenient}\n").grounding.rating_rule == "lenient"
    finally:
        RATING_RULES.remove("lenient")
    with pytest.raises(ConfigError, match="unknown rating rule 'lenient'; choose one of: expected, matched"):
        _config(tmp_path, "grounding: {rating_rule: lenient}\n")


def _config(tmp_path, extra: str):
    (tmp_path / "p.jsonl").write_text("")
    path = tmp_path / "c.yaml"
    path.write_text(f"personas: {{path: {tmp_path / 'p.jsonl'}}}\nvariants: [mf]\n{extra}")
    return load_config(path)


# -- simulated-user variants --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", USER_VARIANTS.names())
async def test_every_user_variant_plays_a_turn_on_the_embedded_model(name, embedded_backend):
    entry = USER_VARIANTS[name]
    assert entry.cls.variant == name and entry.help
    grounding, items, pop = _grounding(use_llm=False)
    twins = {PERSONA.id: ["3"]} if entry.grounded else None
    profile = sample_users([PERSONA], 1, seed=0, variant=name, twins=twins)[0]
    tr = await run_session(profile, PopularityRecommender(items, pop), 1, 7, LLMClient(embedded_backend),
                           grounding=grounding if entry.grounded else None,
                           settings=SessionSettings(slate_size=4, reshow_from=None))
    (turn,) = tr.turns
    assert turn.ok, turn.error
    shown = {it.id for it in turn.slate}
    assert set(turn.chosen) <= shown and set(turn.ratings) <= shown
    assert set(turn.ratings.values()) <= {1, 2, 3, 4, 5} and turn.utterance.strip()


def test_an_unknown_user_variant_is_refused_in_one_line(tmp_path):
    with pytest.raises(ValueError, match="unknown user variant 'chatty'; choose one of: layered, naive, grounded"):
        make_user("chatty", None)
    with pytest.raises(ConfigError, match="unknown user variant 'clone'"):
        _config(tmp_path, "user_variants: [layered, clone]\n")


# -- A/B metrics ------------------------------------------------------------------------------------------

def _sessions(n: int, seed: int = 0) -> list[pd.DataFrame]:
    """Random sessions of 1-3 turns: slates of 2-6 items with genres and mixture components, some chosen
    (some ids not on the slate), ratings 1-5, a consistency value or none."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        rows = []
        for t in range(int(rng.integers(1, 4))):
            ids = [f"i{t}{j}" for j in range(int(rng.integers(2, 7)))]
            slate = [{"id": i, "title": i, "genres": list(rng.choice(["a", "b", "c"], int(rng.integers(0, 3)))),
                      "component": int(rng.integers(2)) if rng.random() < 0.5 else None} for i in ids]
            chosen = [i for i in ids if rng.random() < 0.4] + (["ghost"] if rng.random() < 0.2 else [])
            rows.append({"ok": bool(rng.random() < 0.9), "slate": slate, "chosen": chosen,
                         "ratings": {i: int(rng.integers(1, 6)) for i in ids if rng.random() < 0.8},
                         "consistency": {"reward": float(rng.random())} if rng.random() < 0.7 else {}})
        out.append(pd.DataFrame(rows))
    return out


@pytest.mark.parametrize("name", METRICS.names())
def test_every_metric_keeps_the_contract(name):
    m = METRICS[name]
    assert m.help and m.low < m.high
    assert math.isnan(m.value(Session([])))  # nothing shown: undefined, never 0
    values = [m.value(Session.of(rows)) for rows in _sessions(60)]
    defined = [v for v in values if not math.isnan(v)]
    assert defined, "never defined on 60 random sessions"
    assert all(m.low <= v <= m.high for v in defined), (min(defined), max(defined))
    assert values == [m.value(Session.of(rows)) for rows in _sessions(60)]  # a function of the session alone


def test_a_new_metric_joins_every_ab_table():
    @metric("first_turn_likes", 0.0, 1.0)
    def first_turn_likes(s: Session) -> float:
        """Liked items of the first ok turn / its slate's size."""
        return len(s.pages[0].liked()) / len(s.pages[0].slate) if s.pages else np.nan
    try:
        test_every_metric_keeps_the_contract("first_turn_likes")
        rows = []
        for variant, liked in (("a", 0), ("b", 2)):
            for u in range(6):
                slate = [{"id": f"x{j}", "title": "x", "genres": []} for j in range(4)]
                rows.append({"variant": variant, "user_variant": "grounded", "user_id": f"u{u}", "run": 0,
                             "ok": True, "slate": slate, "chosen": [f"x{j}" for j in range(liked)],
                             "ratings": {f"x{j}": 5 for j in range(liked)}, "consistency": {}})
        table = {r["metric"]: r for r in ab_table(pd.DataFrame(rows), "a", "b", n_boot=200, n_perm=200)}
        assert table["first_turn_likes"]["diff"] == pytest.approx(0.5)
    finally:
        METRICS.remove("first_turn_likes")
    assert "first_turn_likes" not in METRICS


# -- LLM backends -----------------------------------------------------------------------------------------

class _Settings:
    model, base_url, api_key_env, json_mode, n_threads, adapter = "m", "http://127.0.0.1:1/v1", "K", "prompt", 1, None


@pytest.mark.parametrize("name", BACKENDS.names())
def test_every_llm_backend_entry_builds_its_class_from_its_own_options(name):
    import importlib

    entry = BACKENDS[name]
    module, cls_name = entry.target.split(":")
    cls = getattr(importlib.import_module(module), cls_name)
    assert issubclass(cls, Backend) and isinstance(entry.local, bool) and entry.help
    accepted = inspect.signature(cls.__init__).parameters
    options = entry.options(_Settings())
    assert set(options) <= set(accepted), f"{name}: options {set(options) - set(accepted)} not in {cls.__name__}()"
