"""The report's parts with known answers: the persona map, the validity verdicts, the judge's reasons,
the names of AMP-CF's mixture components, the offline table and the inline transcript data."""

from __future__ import annotations

import json

import pytest

from evals.campaign.events import events_frame
from evals.report.gallery import centroid_map
from evals.report.render import transcripts_json
from evals.report.transcripts import browser_payload, decision_by_source, judge_reasons, vector_labels
from evals.validity.verdicts import drift_rows, failed_row, fidelity_row, power_rows
from personas.card import PersonaCard, read_personas
from tests.campaign_fixtures import reasons_key, write_campaign


def test_centroid_map_puts_personas_on_their_principal_components():
    centroids = [[2, 0, 0], [-2, 0, 0], [0, 1, 0], [0, -1, 0]]  # variance 8 along x, 2 along y
    cards = [PersonaCard(id=f"p{i}", name=f"p{i}", summary="", centroid=c) for i, c in enumerate(centroids)]
    m = centroid_map(cards)
    assert m["share"] == pytest.approx([0.8, 0.2])
    assert [abs(x) for x, _ in m["xy"]] == pytest.approx([2, 2, 0, 0])
    assert [abs(y) for _, y in m["xy"]] == pytest.approx([0, 0, 1, 1])
    assert centroid_map([c.model_copy(update={"centroid": []}) for c in cards]) is None  # hand-written cards


def _null(p: float, min_p: float) -> dict:
    return {"mean": 2.0, "q025": 1.0, "q975": 3.0, "p_value": p, "min_p": min_p, "n_perm": 2000, "exact": False,
            "detectable_below": 1.2 if min_p <= 0.05 else None}


def test_drift_verdicts_read_the_ratio_against_its_null():
    drift = {"by_user_variant": {
        "a": {"ratio_within_over_between": 0.2, "ratio_ci": [0.1, 0.3], "null": _null(0.01, 0.001)},
        "b": {"ratio_within_over_between": 2.1, "ratio_ci": [0.6, 2.1], "null": _null(0.85, 0.001)},
        "c": {"ratio_within_over_between": 2.1, "ratio_ci": None, "null": _null(0.5, 0.2)},
        "d": {"ratio_within_over_between": None, "null": None, "verdict": "undefined: one persona"}}}
    rows = {r["check"].split(", ")[1]: r for r in drift_rows(drift)}
    assert rows["a users"]["status"] == "ok" and rows["a users"]["verdict"].startswith("stable")
    assert rows["b users"]["status"] == "bad" and rows["b users"]["verdict"].startswith("too noisy to compare personas")
    assert "vs identical personas 2 [1, 3], p = 0.85" in rows["b users"]["figure"]
    assert rows["b users"]["verdict"].endswith("(this design detects a ratio below 1.2)")
    assert rows["c users"]["status"] == "warn" and "too few users" in rows["c users"]["verdict"]
    assert rows["d users"]["status"] == "missing" and "one persona" in rows["d users"]["verdict"]


def test_power_verdict_says_when_the_ab_cannot_conclude():
    def row(metric, n, min_p_holm, mde, p_holm):
        return {"metric": metric, "n_users": n, "p_value": p_holm, "p_holm": p_holm, "min_p_holm": min_p_holm,
                "can_reach_alpha": min_p_holm <= 0.05, "mde": mde}

    small = power_rows([{"control": "mf", "treatment": "ampcf", "rows": [row("acceptance_rate", 6, 0.125, None, 0.5)]}])
    assert small[0]["status"] == "bad" and small[0]["verdict"].startswith("too small to conclude")
    big = power_rows([{"control": "mf", "treatment": "ampcf",
                       "rows": [row("acceptance_rate", 16, 0.004, 0.025, 0.01),
                                row("diversity", 16, 0.004, 0.11, 0.6)]}])
    assert big[0]["status"] == "ok" and "differs: acceptance_rate" in big[0]["verdict"]
    assert "16 paired users" in big[0]["figure"] and "MDE acceptance_rate 0.025, diversity 0.11" in big[0]["figure"]


def test_fidelity_and_failed_turn_verdicts():
    targets = {"accuracy >= 0.85": False, "rmse below user-mean": True}
    assert fidelity_row(None)["status"] == "missing"
    part = fidelity_row({"headline": {"twin_rmse": 1.128, "user_mean_rmse": 1.131, "targets": targets}})
    assert part["status"] == "warn" and part["verdict"].startswith("partly believable: 1 of 2")
    assert "not met: accuracy >= 0.85" in part["verdict"] and "RMSE 1.128 vs user mean 1.131" in part["figure"]
    assert "histogram" not in part["figure"]  # a fidelity.json from before the rating rules
    tv = fidelity_row({"headline": {"twin_rmse": 1.046, "twin_rating_tv": 0.336, "twin_matched_rating_tv": 0.075,
                                    "twin_matched_rmse": 1.239, "targets": targets}})
    assert ("its ratings' histogram 0.34 from the real one (total variation), 0.07 under the 'matched' rating rule "
            "at RMSE 1.239") in tv["figure"]
    full = fidelity_row({"headline": {"targets": {k: True for k in targets}}})
    assert full["status"] == "ok" and full["verdict"] == "believable: every fidelity target met"
    assert failed_row({"n_events": 100, "n_failed": 0}, {})["status"] == "ok"
    bad = failed_row({"n_events": 100, "n_failed": 20}, {"no JSON": 15, "timeout": 5})
    assert bad["status"] == "bad" and "20%" in bad["verdict"] and bad["figure"].endswith("no JSON (15x); timeout (5x)")


def test_vector_labels_name_each_vector_by_its_genres():
    slates = [[{"genres": ["Drama", "Romance"], "component": 0}, {"genres": ["Drama"], "component": 0},
               {"genres": ["Horror"], "component": 1}, {"genres": ["Comedy"], "component": None}],
              [{"genres": ["Action", "Horror"], "component": 1}, {"genres": [], "component": 2}]]
    assert vector_labels(slates) == {0: "Drama, Romance", 1: "Horror, Action", 2: "no genre"}
    assert vector_labels([[{"genres": ["Drama"], "component": None}]]) == {}


def test_an_old_offline_table_reads_taste_coverage_under_its_name_now(tmp_path):
    """A campaign's models/offline.json written before the rename calls taste coverage persona_coverage@10."""
    from evals.report.render import OFFLINE_COLUMNS
    from evals.report.summary import offline_rows

    path = tmp_path / "offline.json"
    path.write_text(json.dumps({"rows": [{"variant": "mf", "ndcg@10": 0.07, "persona_coverage@10": 0.5}]}))
    assert offline_rows(path) == [{"variant": "mf", "ndcg@10": 0.07, "taste_coverage@10": 0.5}]
    assert "taste_coverage@10" in OFFLINE_COLUMNS and offline_rows(tmp_path / "none.json") == []


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    out = write_campaign(tmp_path_factory.mktemp("campaign"), users_per_persona=1, runs=2, turns=3)
    cards = {c.id: c for c in read_personas(out / "personas" / "personas.jsonl")}
    return out, events_frame(out / "events.jsonl"), cards


def test_recomputed_reasons_are_the_session_scorers_and_a_foreign_verdict_gets_none(campaign):
    out, df, cards = campaign
    expected = json.loads((out / "judge_reasons.json").read_text())
    sessions = {}
    for e in df.sort_values("turn", kind="stable").to_dict("records"):
        sessions.setdefault(reasons_key(**{**e, "turn": None}), []).append(e)
    flagged = 0
    for rows in sessions.values():
        got = judge_reasons(rows, cards[rows[0]["persona_id"]])
        assert got == [expected.get(reasons_key(**e), []) for e in rows]
        flagged += sum(bool(r) for r in got)
    assert flagged >= 5
    rows = next(rows for rows in sessions.values() if all(e["ok"] for e in rows))
    i = next(i for i, e in enumerate(rows) if e["consistency"]["prompt_to_line"] == 1)
    rows[i] = {**rows[i], "consistency": {**rows[i]["consistency"], "prompt_to_line": 0.0}}
    assert judge_reasons(rows, cards[rows[0]["persona_id"]])[i] is None  # another judge's verdict


def test_payload_stores_items_and_users_once_and_stays_inside_its_script_tag(campaign):
    _, df, cards = campaign
    payload = browser_payload(df, cards)
    assert len(payload["sessions"]) == df.groupby(["variant", "user_variant", "user_id", "run"]).ngroups == 24
    assert len(payload["layers"]) == 6  # 3 personas x 1 user x 2 user variants: one entry per simulated user
    assert set(payload["items"]) == {s["id"] for slate in df["slate"] for s in slate}
    assert sum(s["failed"] for s in payload["sessions"]) == int((~df["ok"]).sum())
    text = str(transcripts_json({"sessions": [{"utterance": "</script><script>alert(1)</script>"}]}))
    assert "</script>" not in text and json.loads(text)["sessions"][0]["utterance"].startswith("</script>")


def test_the_browser_shows_one_contribution_per_source():
    """A product with n_rated counts with its item feature; the sources still sum to the logit's features."""
    record = {"i1": {"p_take": 0.118, "p_like": 0.734, "ease": 0.5, "ease*n_rated": -0.25, "n_rated": 0.1, "cf": 0.3,
                     "cf*n_rated": 0.05, "llm": 0.0}}
    p, parts, take = decision_by_source(record)["i1"]
    assert p == 0.73 and take == 0.12 and parts == {"ease": 0.25, "n_rated": 0.1, "cf": 0.35, "llm": 0.0}
    del record["i1"]["p_take"]  # a record from before p(take)
    assert decision_by_source(record)["i1"][2] is None
    assert decision_by_source(None) == {}


def test_hand_written_cards_get_a_gallery_that_says_what_they_lack(tmp_path):
    from pathlib import Path

    from evals.report.gallery import persona_gallery
    from evals.report.render import render_report
    from tests.test_evals_report import constructed_summary

    path = Path(__file__).parent / "data" / "personas_movies.jsonl"  # no centroids, passages or separability
    gallery = persona_gallery(read_personas(path), path, {"comedy-nurse": 2})
    assert gallery["map"] is None and gallery["separability"] is None
    notes = " | ".join(gallery["notes"])
    assert "no separability report" in notes and "no map" in notes and "no evidence passages" in notes
    page = render_report({**constructed_summary(), "personas": gallery}, tmp_path)[0].read_text()
    assert page.count('class="card"') == 3 and page.count("No evidence passages on this card.") == 3
    assert "<svg class='minimap'" not in page and "plot-personas" not in page
    assert "2 simulated users" in page and "no separability report" in page


def test_population_realism_reaches_the_report(tmp_path):
    from evals.report.render import render_report
    from evals.report.summary import population_rows
    from tests.test_evals_report import constructed_summary

    w = lambda v: {"wasserstein": {"value": v, "ci": [v / 2, v * 2]}, "mean": 0.5, "sd": 0.1}  # noqa: E731
    record = {"population_realism": {"populations": ["twin", "persona", "average_user"], "rows": [
        {"statistic": "like_rate", "real_mean": 0.52, "real_sd": 0.2, "twin": w(0.031), "persona": w(0.09),
         "average_user": w(0.12)}]}}
    rows = population_rows(record)
    assert rows == [{"statistic": "like_rate", "real mean (sd)": "0.520 (0.200)", "W twin": "0.031 [0.015, 0.062]",
                     "W persona": "0.090 [0.045, 0.180]", "W average_user": "0.120 [0.060, 0.240]"}]
    assert population_rows({}) == []  # a fidelity.json from before population realism
    summary = constructed_summary()
    summary["validity"] = {"fidelity": {"path": "f.json", "config_hash": "h", "headline": {"targets": {}},
                                        "model": "", "n_users": 300, "source": "campaign", "against": [],
                                        "population": rows}}
    html_path, _ = render_report(summary, tmp_path)
    page = html_path.read_text()
    assert "A population, not one average person" in page and "0.031 [0.015, 0.062]" in page


def test_drift_is_read_against_real_users_and_the_ab_against_its_own_calibration():
    from evals.validity.verdicts import ab_power_row, real_drift_rows

    real = {"design": {"median": 3.4, "q025": 1.65, "q975": 7.85, "users_per_persona": 4, "draws": 200}}
    drift = {"by_user_variant": {"grounded": {"ratio_ci": [0.56, 2.43]}, "frozen": {"ratio_ci": [0.05, 0.2]},
                                 "loud": {"ratio_ci": [9.0, 12.0]}}}
    rows = {r["check"].split(", ")[-1]: r for r in real_drift_rows(drift, real)}
    assert rows["grounded users"]["status"] == "ok" and rows["grounded users"]["verdict"].startswith("within")
    assert rows["frozen users"]["status"] == "bad" and "stability built in" in rows["frozen users"]["verdict"]
    assert rows["loud users"]["status"] == "warn"
    assert real_drift_rows(drift, None)[0]["status"] == "missing"
    [why] = real_drift_rows(drift, {"unavailable": "not measurable on an implicit log: ..."})  # said, not "run X"
    assert why["status"] == "missing" and why["verdict"].startswith("not measurable") and "benchmarks" not in why["verdict"]

    def record(fp, power):
        return {"pairs": 100, "design": {"paired_users": 16}, "primary": "like_rate", "degrade_share": 0.3,
                "aa": {"familywise": {"rate": fp, "ci": [0.0, fp + 0.05]}},
                "degraded": {"power": {"rate": power, "ci": [power - 0.1, power + 0.05]}},
                "targets": {"A/A family-wise false-positive rate <= 0.05": fp <= 0.05,
                            "degraded recommender detected with power >= 0.8 (like_rate)": power >= 0.8}}
    assert ab_power_row(record(0.02, 0.84))["status"] == "ok"
    weak = ab_power_row(record(0.02, 0.5))
    assert weak["status"] == "bad" and "power >= 0.8 (like_rate): not met" in weak["verdict"]
    assert ab_power_row(None)["status"] == "missing"


def test_the_report_header_marks_the_stated_context_as_an_assumption_and_says_a_deterministic_decision():
    from evals.campaign.config import CampaignConfig
    from evals.report.summary import _decision_warning, layer_assumptions

    def cfg(**grounding):
        return CampaignConfig.model_validate({"personas": {"path": "p"}, "variants": ["mf"],
                                              "user_variants": ["grounded"], "grounding": grounding})

    both = layer_assumptions(cfg())
    assert len(both) == 2 and both[1].startswith("assumption: the grounded users' context shifts are stated")
    assert layer_assumptions(cfg(layers=["subtopic"])) == both[:1]  # the focus shift is fitted: no assumption
    assert "play no layer" in layer_assumptions(cfg(layers=[]))[0]
    naive = CampaignConfig.model_validate({"personas": {"path": "p"}, "variants": ["mf"], "user_variants": ["naive"]})
    assert layer_assumptions(naive) == [] and _decision_warning(naive) == []
    assert _decision_warning(cfg()) == []
    assert "deterministically" in _decision_warning(cfg(decision="deterministic"))[0]
