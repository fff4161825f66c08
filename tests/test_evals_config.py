"""The campaign config: validated once, errors name the file and field."""

from __future__ import annotations

import pytest

from evals.config import CampaignConfig, ConfigError, load_config


def _write(tmp_path, text: str):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


BASE = "personas: {path: p.jsonl}\nvariants: [mf, ampcf]\n"


def test_default_config_is_valid():
    cfg = load_config("configs/default.yaml")
    assert cfg.llm.backend == "embedded" and "ampcf" in cfg.variants
    assert len(cfg.config_hash()) == 12


@pytest.mark.parametrize(
    "text, expected",
    [
        (BASE + "turnz: 3\n", "field 'turnz': unknown key"),
        ("personas: {path: p.jsonl}\nvariants: [mf, xgboost]\n", "unknown variant 'xgboost'"),
        ("personas: {path: p.jsonl}\nvariants: [mf+shuffle]\n", "unknown variant 'mf+shuffle'"),
        (BASE + "llm: {backend: embedded, concurency: 2}\n", "field 'llm.concurency': unknown key"),
        (BASE + "turns: 0\n", "field 'turns'"),
        (BASE + "grounding: {rating_rule: median}\n", "field 'grounding.rating_rule'"),
        ("personas: {}\nvariants: [mf]\n", "exactly one of 'path' or 'extract'"),
        ("variants: [mf]\n", "field 'personas': Field required"),
        ("- just\n- a list\n", "mapping"),
        ("personas: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_configs_name_the_field(tmp_path, text, expected):
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    assert expected in str(info.value)
    assert str(tmp_path / "c.yaml") in str(info.value)


def test_hash_changes_with_results_not_with_executor():
    a = CampaignConfig.model_validate({"personas": {"path": "p"}, "variants": ["mf"]})
    b = a.model_copy(update={"executor": "ray", "sessions_in_flight": 3})
    c = a.model_copy(update={"seed": 1})
    assert a.config_hash() == b.config_hash() != c.config_hash()
