"""The campaign config: validated once, errors name the file and field."""

from __future__ import annotations

import pytest

from evals.campaign.config import CampaignConfig, ConfigError, load_config


def _write(tmp_path, text: str):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


BASE = "personas: {path: p.jsonl}\nvariants: [mf, ampcf]\n"


def test_default_config_is_valid():
    cfg = load_config("configs/default.yaml")
    # the seed question: MF against the reranker and against the AMP-CF mixture started from MF
    assert cfg.llm.backend == "embedded" and cfg.variants == ["mf", "mf+mmr", "ampcf-mf"]
    assert cfg.users_for("grounded") == 5  # the power rule's answer (configs/default.yaml)
    assert len(cfg.config_hash()) == 12


@pytest.mark.parametrize(
    "text, expected",
    [
        (BASE + "turnz: 3\n", "field 'turnz': unknown key"),
        ("personas: {path: p.jsonl}\nvariants: [mf, xgboost]\n", "variant 'xgboost': unknown recommender 'xgboost': use a built-in (pop, mf, ampcf"),
        ("personas: {path: p.jsonl}\nvariants: [mf+shuffle]\n", "variant 'mf+shuffle': unknown reranker 'shuffle'"),
        (BASE + "llm: {backend: embedded, concurency: 2}\n", "field 'llm.concurency': unknown key"),
        (BASE + "turns: 0\n", "field 'turns'"),
        (BASE + "grounding: {rating_rule: median}\n", "field 'grounding.rating_rule'"),
        (BASE + "grounding: {temperature: 0.0}\n",  # an old key: refused with the one that replaced it
         "field 'grounding': Value error, field 'temperature' is gone: grounded users sample from calibrated "
         "probabilities; use 'decision: sampled' (the default) or 'decision: deterministic'"),
        (BASE + "grounding: {decision: argmax}\n", "field 'grounding.decision'"),
        (BASE + "users_per_persona: 0\n", "field 'users_per_persona': Value error, every count must be between 1 and 500"),
        (BASE + "users_per_persona: {layered: 100000}\n", "field 'users_per_persona': Value error, every count must be "
                                                         "between 1 and 500, got {'layered': 100000}"),
        (BASE + "runs_per_user: 1000\n", "field 'runs_per_user'"),
        (BASE + "user_variants: [grounded]\nusers_per_persona: {grounded: 4, naive: 2}\n",
         "field 'users_per_persona': Value error, names ['grounded', 'naive']; name each of user_variants ['grounded']"),
        ("personas: {}\nvariants: [mf]\n", "exactly one of 'path' or 'extract'"),
        ("variants: [mf]\n", "field 'personas': Field required"),
        ("personas: {path: p.jsonl}\nvariants: [mf+mixture]\n", "variant 'mf+mixture': the 'mixture' reranker needs a model with attention over mixture components"),
        ("personas: {path: p.jsonl}\nvariants: [mf+personas]\n", "variant 'mf+personas': the 'mixture' reranker needs"),  # its old name
        ("personas: {path: p.jsonl}\nvariants: [mf, nosuch_module_xyz:make]\n",
         "recommender 'nosuch_module_xyz:make': module 'nosuch_module_xyz' does not import: ModuleNotFoundError"),
        ("personas: {path: p.jsonl}\nvariants: [mf, recsys.models:no_such_factory]\n",
         "recommender 'recsys.models:no_such_factory': module 'recsys.models' has no 'no_such_factory'"),
        ("personas: {path: p.jsonl}\nvariants: [mf, 'x y:z']\n",
         "recommender 'x y:z': a plug-in is 'package.module:factory'"),
        ("personas: {path: p.jsonl}\nvariants: [mf, ampcf-mf]\nrecsys: {mixture_k: 1}\n",
         "field 'recsys': Value error, variant 'ampcf-mf' needs mixture_k >= 2"),
        ("- just\n- a list\n", "mapping"),
        ("personas: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_configs_name_the_field(tmp_path, text, expected):
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    assert expected in str(info.value)
    assert str(tmp_path / "c.yaml") in str(info.value)


def test_old_key_personas_k_reads_as_mixture_k(tmp_path):
    """recsys.personas_k was mixture_k's name: an old config means the same and hashes the same; both keys are refused."""
    old = load_config(_write(tmp_path, BASE + "recsys: {personas_k: 3}\n"))
    new = load_config(_write(tmp_path, BASE + "recsys: {mixture_k: 3}\n"))
    assert old.recsys.mixture_k == 3 and old.config_hash() == new.config_hash()
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, BASE + "recsys: {personas_k: 3, mixture_k: 3}\n"))
    assert len(str(info.value).splitlines()) == 1
    assert "field 'recsys': Value error, give mixture_k or its old name personas_k, not both" in str(info.value)


def test_hash_changes_with_results_not_with_executor():
    a = CampaignConfig.model_validate({"personas": {"path": "p"}, "variants": ["mf"]})
    b = a.model_copy(update={"executor": "ray", "sessions_in_flight": 3})
    c = a.model_copy(update={"seed": 1})
    assert a.config_hash() == b.config_hash() != c.config_hash()


def test_hash_changes_with_the_prompt_templates(edit_prompts):
    """A campaign asked with other prompts is another campaign: --resume will not mix their events. So is
    a fidelity run that asks the LLM."""
    from evals.validity.fidelity import FidelityConfig

    configs = (CampaignConfig.model_validate({"personas": {"path": "p"}, "variants": ["mf"]}),
               FidelityConfig(use_llm=True), FidelityConfig(use_llm=False))
    before = [c.config_hash() for c in configs]
    edit_prompts("turn", "The app shows you:", "The app shows you:")  # the same texts elsewhere
    assert [c.config_hash() for c in configs] == before
    edit_prompts("turn", "The app shows you:", "You see:")
    campaign, asks, reads_no_llm = (c.config_hash() for c in configs)
    # a fidelity run hashes the templates only when it asks the LLM
    assert campaign != before[0] and asks != before[1] and reads_no_llm == before[2]


def test_users_per_persona_per_user_variant_sizes_each_variants_jobs():
    from evals.campaign.jobs import plan_jobs

    cfg = CampaignConfig.model_validate({"personas": {"path": "p"}, "variants": ["mf", "ampcf"],
                                         "user_variants": ["grounded", "naive"],
                                         "users_per_persona": {"naive": 1, "grounded": 3}})
    assert (cfg.users_for("grounded"), cfg.users_for("naive")) == (3, 1)
    jobs = plan_jobs(cfg.seed, cfg.variants, cfg.user_variants, {"grounded": 6, "naive": 2}, runs=2)
    assert [sum(j.user_variant == uv for j in jobs) for uv in ("grounded", "naive")] == [6 * 2 * 2, 2 * 2 * 2]
    # user i's sessions keep their seeds when a user variant gets more users (a larger design extends a smaller one)
    small = plan_jobs(cfg.seed, cfg.variants, cfg.user_variants, 2, runs=2)
    assert {j for j in small if j.user_variant == "grounded"} <= set(jobs)
    one = CampaignConfig.model_validate({"personas": {"path": "p"}, "variants": ["mf"], "users_per_persona": 3})
    assert one.users_for("layered") == 3


def test_ampcf_started_from_mf_is_a_campaign_model_with_or_without_mixture_calibration():
    cfg = CampaignConfig.model_validate({"personas": {"path": "p"}, "variants": ["mf", "ampcf-mf", "ampcf-mf+mixture"],
                                         "recsys": {"mixture_k": 2}})
    assert cfg.variants[1:] == ["ampcf-mf", "ampcf-mf+mixture"]
    # the reranker's old name keeps its meaning: an old config's 'ampcf-mf+personas' runs as 'ampcf-mf+mixture'
    old = CampaignConfig.model_validate({"personas": {"path": "p"}, "variants": ["mf", "ampcf-mf", "ampcf-mf+personas"],
                                         "recsys": {"personas_k": 2}})
    assert old.variants == cfg.variants and old.config_hash() == cfg.config_hash()
    with pytest.raises(ValueError, match="variants repeat"):
        CampaignConfig.model_validate({"personas": {"path": "p"}, "variants": ["ampcf+personas", "ampcf+mixture"]})


def test_a_services_options_are_fields_that_reach_the_model():
    from evals.campaign.world import settings_of
    from recsys.registry import build

    url = "http://127.0.0.1:9"
    base = {"personas": {"path": "p.jsonl"}, "variants": ["mf", url]}
    cfg = CampaignConfig.model_validate({**base, "recsys": {"services": {url: {"depth": 40, "timeout_s": 2.5,
                                                                              "auth_env": "MY_TOKEN"}}}})
    model = build(url, settings_of(cfg))
    assert (model.depth, model.timeout_s, model.retries, model.auth_env) == (40, 2.5, 4, "MY_TOKEN")
    assert build(url, settings_of(CampaignConfig.model_validate(base))).depth == 100  # not named: the defaults
    assert CampaignConfig.model_validate({**base, "recsys": {"services": {}}}).config_hash() == \
        CampaignConfig.model_validate(base).config_hash()  # no services: the hash configs had before
    for services, message in (({"http://127.0.0.1:8": {}}, "'http://127.0.0.1:8' is no model of variants"),
                              ({url: {"auth_env": "MY TOKEN"}}, "auth_env"),
                              ({url: {"depth": 0}}, "depth")):
        with pytest.raises(ValueError, match=message):
            CampaignConfig.model_validate({**base, "recsys": {"services": services}})


def test_the_planned_voices_worked_examples_are_part_of_the_prompt_digest(edit_prompts):
    """The planned voice's worked examples are prompt text: editing them makes another campaign, and the voice
    reads the edited ones."""
    from simulator.voice import Plan, plan_messages
    from simulator.layers import sample_users
    from tests.test_simulator_session import CARD

    cfg = CampaignConfig.model_validate({"personas": {"path": "p"}, "variants": ["mf"]})
    before = cfg.config_hash()
    profile = sample_users([CARD], 1, seed=0)[0]
    plan = Plan(chosen=("Heat",), genre="thriller", like="Fargo")
    assert "Tootsie" in str(plan_messages(plan, profile))
    edit_prompts("grounded_plan_shots.json", "Tootsie", "Big")  # the plan field and its sentence
    assert cfg.config_hash() != before
    said = str(plan_messages(plan, profile))
    assert "like Big" in said and "Tootsie" not in said
