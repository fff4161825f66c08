"""The fidelity benchmark end to end (small, without the LLM feature) and its bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evals.validity.calibration import CalibrationError, calibrate, read_calibration
from evals.validity.fidelity import FidelityConfig
from recsys.time_splits import make_split
from simulator.evidence import EVIDENCE, ITEM_EVIDENCE, N_RATED, RECENT_POP

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evals.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_fidelity_reports_every_figure_with_its_ci_and_the_baselines(fidelity_run):
    out, result = fidelity_run
    on_disk = json.loads((out / "fidelity.json").read_text())
    assert on_disk["config_hash"] == result["config_hash"] and on_disk["seed"] == 0
    methods = {r["method"] for r in result["taste_alignment"]}
    assert methods == {"twin", "twin_without_layers", "persona", "random", "popularity", "persona_cf",
                       "user_als"}  # no llm_only: no LLM
    cells = {(r["negatives"], r["ratio"]) for r in result["taste_alignment"]}
    assert cells == {(n, f"1:{k}") for n in ("uniform", "popularity_matched") for k in (1, 3, 9)}
    spread = result["layers_spread"]  # the train part's sittings against the layers' bound
    assert spread["simulated_at_most"] > 0 and spread["real"]["n_sittings"] > 100
    assert result["headline"]["targets"]["layers: a session's genre mix varies less than real sittings' "
                                         "(evals.validity.sittings)"] == spread["within_real"]
    within = result["taste_within_users"]  # the same methods at 1:1, read within each user
    assert {(r["negatives"], r["method"]) for r in within["auc"]} == {(n, m) for n in ("uniform", "popularity_matched")
                                                                     for m in methods}
    assert {(d["method"], d["rule"]) for d in within["differences"]} >= {("twin", "popularity"),
                                                                        ("twin_without_layers", "user_als")}
    assert all(d["diff"]["ci"][0] <= d["diff"]["value"] <= d["diff"]["ci"][1] for d in within["differences"])
    # the user-level ALS rule is tuned on the validation split of the part it is fitted on, never the held-out part
    from evals.validity.grounding import split_for
    from personas.infra.assets import ml100k_dir
    from recsys import load_movielens

    split = split_for(load_movielens(ml100k_dir()), out / "personas" / "personas.jsonl")
    tuned = result["user_als"]
    assert tuned["validation"] == split.inner().key != split.key and set(tuned["params"]) == set(tuned["grid"])
    assert all(tuned["params"][k] in v for k, v in tuned["grid"].items()) and on_disk["user_als"] == tuned
    for r in result["taste_alignment"]:
        if r["method"] == "user_als":  # a ranking with no like rule of its own: its AUC only
            assert r["accuracy"] is None and r["f1"] is None and 0.0 <= r["auc"]["value"] <= 1.0
            continue
        for m in ("accuracy", "precision", "recall", "f1", "auc"):
            v, (lo, hi) = r[m]["value"], r[m]["ci"]
            assert lo - 1e-9 <= v <= hi + 1e-9, (r["method"], m, v, lo, hi)
    random_auc = next(r["auc"] for r in result["taste_alignment"]
                      if r["method"] == "random" and r["negatives"] == "uniform" and r["ratio"] == "1:9")
    assert random_auc["ci"][0] < 0.5 < random_auc["ci"][1] or abs(random_auc["value"] - 0.5) < 0.15
    twin_auc = next(r["auc"]["value"] for r in result["taste_alignment"]
                    if r["method"] == "twin" and r["negatives"] == "uniform" and r["ratio"] == "1:1")
    head, auc = result["headline"], {(r["negatives"], r["method"]): r["auc"]["value"]
                                     for r in result["taste_alignment"] if r["ratio"] == "1:1"}
    for d in result["taste_against_simple_rules"]:  # twin minus each same-run simple rule, paired over users
        assert d["diff"]["value"] == pytest.approx(auc[d["negatives"], "twin"] - auc[d["negatives"], d["rule"]], abs=2e-4)
        assert d["diff"]["ci"][0] - 1e-9 <= d["diff"]["value"] <= d["diff"]["ci"][1] + 1e-9
    assert {(d["negatives"], d["rule"]) for d in result["taste_against_simple_rules"]} == \
        {(n, r) for n in ("uniform", "popularity_matched") for r in ("popularity", "persona_cf", "user_als")}
    key = "twin AUC (1:1, matched) above user_als's (paired CI above 0)"
    assert head["targets"][key] == (head["twin_minus_user_als_auc_1to1_matched"]["ci"][0] > 0)
    assert twin_auc > 0.6  # grounded in the user's own history: well above chance even at this size
    rating = {r["method"]: r for r in result["rating_error"]}
    assert {"twin", "twin_matched", "twin_expected", "persona", "user_mean", "item_mean"} <= set(rating)
    # the paired differences against each baseline are the differences of the RMSEs, with a CI around them
    for base in ("user_mean", "item_mean"):
        d = rating[f"twin - {base} (RMSE difference)"]["rmse"]
        assert abs(d["value"] - (rating["twin"]["rmse"]["value"] - rating[base]["rmse"]["value"])) < 1e-3
        assert d["ci"][0] - 1e-9 <= d["value"] <= d["ci"][1] + 1e-9
    # both rating rules' histograms (one draw of each rule's distribution) against the real one
    dist = result["rating_distribution"]
    assert {sum(h) for h in dist["histogram"].values()} == {rating["twin"]["n_ratings"]}
    for key in ("twin_sampled", "twin_matched_sampled"):
        tv = dist["total_variation"][key]
        assert 0 <= tv["ci"][0] - 1e-9 <= tv["value"] <= tv["ci"][1] + 1e-9 <= 1 + 1e-9
    assert result["headline"]["twin_matched_rating_tv"] == dist["total_variation"]["twin_matched_sampled"]["value"]
    # like given watched, on the held-out rated items: its reliability, and the headline reads it
    watched = result["like_given_watched"]
    assert watched["n"] == rating["twin"]["n_ratings"] and 0 <= watched["ece"] <= 1
    assert sum(b["n"] for b in watched["bins"]) == watched["n"] and 0 < watched["real_share"] < 1
    assert result["headline"]["like_given_watched_ece"] == watched["ece"]
    # the measured users play the campaign's layers; the same twins without them are scored beside, paired
    assert result["config"]["layers"] == ["subtopic", "context"]
    cost = result["taste_with_layers_minus_without"]
    assert {c["negatives"] for c in cost} == {"uniform", "popularity_matched"}
    assert all(c["rule"] == "twin_without_layers" and c["diff"]["ci"][0] <= c["diff"]["ci"][1] for c in cost)
    null = watched["ece_if_calibrated"]  # the ECE a calibrated model shows on as few items: far above 0 here
    assert 0 < null["median"] <= null["q95"] and 0 <= null["p_value"] <= 1
    assert result["headline"]["targets"]["like given watched: ECE within a calibrated model's (p >= 0.05)"] == \
        (null["p_value"] >= 0.05)
    # population realism: every statistic, every population, a distance with its CI, and the targets read them
    pop = result["population_realism"]
    assert pop["n_users"] == result["n_users"] and len(pop["rows"]) == 5
    for row in pop["rows"]:
        assert row["floor"]["wasserstein"]["value"] is None  # 3 rated items a user: halves of one, no floor
        for who in ("twin", "persona", "average_user", "twin_flat"):
            w = row[who]["wasserstein"]
            # a percentile CI of a distance need not hold its point (resampled users add distance): ordered, >= 0
            assert 0 <= w["value"] and 0 <= w["ci"][0] <= w["ci"][1], (row["statistic"], who)
        gain = row["twin_minus_twin_flat"]  # what the person's own level adds, paired
        assert gain["ci"][0] <= gain["ci"][1]
    assert pop["comparisons"] == ["twin_flat", "floor"]
    assert sum(k.startswith("population: ") for k in result["headline"]["targets"]) == 10
    ab = result["ab_fidelity"]
    assert set(ab["simulated_like_rate"]) == {"random", "pop", "mf", "ampcf"} and len(ab["pairs"]) == 6
    capped = ab["capped_acceptance"]
    assert len(capped["pairs"]) == 6 and capped["ceiling"] == 0.4
    # a liked item was taken: the like rate never exceeds the acceptance, which never exceeds the cap
    for v, a in capped["simulated_acceptance"].items():
        assert ab["simulated_like_rate"][v] <= a + 1e-9 and a <= capped["ceiling"] + 1e-9
    # acceptance against each recommender's real hit rate on the same pages; popularity alone was in the fit
    take = ab["acceptance_against_hit_rate"]
    assert [r["recommender"] for r in take["rows"]] == ["random", "pop", "mf", "ampcf"] and take["n_unseen"] == 3
    for r in take["rows"]:
        lo, hi = r["real_hit_rate_same_users"]["ci"]
        assert r["within_real_ci"] == (lo <= r["simulated_acceptance"]["value"] <= hi)
        assert r["used_by_the_fit"] == (r["recommender"] == "pop")
    # the real hit rates order random far below the learnt recommenders
    real = {r["recommender"]: r["real_hit_rate_all_users"]["value"] for r in take["rows"]}
    assert real["random"] < real["pop"] and real["random"] < real["mf"]
    assert all(p["verdict"] in ("agrees", "disagrees") or p["verdict"].startswith("tie") for p in ab["pairs"])
    assert ab["offline_recall_at_10"]["random"] < ab["offline_recall_at_10"]["mf"]
    cal = result["calibration"]["twin"]
    # one leave-out per source (this run has no llm feature): the item features, each with its products,
    # n_rated with every product with it, recent_pop with its product
    assert set(cal["auc_drop_without"]) == {*ITEM_EVIDENCE, N_RATED, RECENT_POP}
    assert set(cal["like_coef"]) == set(EVIDENCE)
    # on the rows it was fitted on, the matched rule reproduces the real histogram (up to ties at a cutpoint)
    real, matched = cal["rating_hist_real"], cal["rating_hist_matched"]
    assert sum(matched) == sum(real) and max(abs(a - b) for a, b in zip(matched, real)) <= 2, (real, matched)
    # the base rates: the take level reproduces the hit rate it was fitted on; like given watched is
    # unweighted, so its cross-validated mean is near the real like share of the rated items
    assert cal["take"]["k"] == 15 and 0 < cal["take"]["real_hit_rate"] < 1
    cv = cal["like_given_watched_cv"]
    assert abs(cv["mean_p"] - cv["real_share"]) < 0.05 and cv["ece"] < 0.15


def _scrambled_outside_train(ppath: Path):
    """(MovieLens, a copy whose ratings outside the personas' train part are scrambled: the validation split's test
    part, the test split's, and the future after the cut)."""
    import numpy as np

    from evals.validity.grounding import outside, split_for
    from personas.infra.assets import ml100k_dir
    from recsys import Dataset, load_movielens

    ds = load_movielens(ml100k_dir())
    split = split_for(ds, ppath)
    scrambled = ds.ratings.copy()
    rng = np.random.default_rng(0)
    keys = set(map(tuple, outside(ds, split)[["user", "timestamp", "item"]].to_numpy()))
    mask = np.array([k in keys for k in map(tuple, scrambled[["user", "timestamp", "item"]].to_numpy())])
    assert mask.sum() == len(ds.ratings) - len(split.train) > len(split.test)
    scrambled.loc[mask, "rating"] = rng.integers(1, 6, mask.sum()).astype(float)
    return ds, Dataset(scrambled, ds.items, ds.users, ds.name)


def test_calibration_never_reads_the_test_part(fidelity_run, tmp_path):
    """Refit on data whose ratings outside the train part are scrambled: the calibration is the same, number for
    number."""
    from evals.validity.grounding import split_for

    out, _ = fidelity_run
    ppath = out / "personas" / "personas.jsonl"
    ds, ds2 = _scrambled_outside_train(ppath)
    a = calibrate(ds, split_for(ds, ppath), ppath, None, n_users=25, use_llm=False, seed=3, show_progress=False)
    b = calibrate(ds2, split_for(ds2, ppath), ppath, None, n_users=25, use_llm=False, seed=3, show_progress=False)
    assert a["models"] == b["models"] and a["report"] == b["report"]


def test_hard_negatives_read_train_only_are_recorded_and_a_run_asking_otherwise_is_refused(fidelity_run):
    from evals.validity.fidelity import FidelityError, check_calibration
    from evals.validity.grounding import split_for

    out, _ = fidelity_run
    ppath = out / "personas" / "personas.jsonl"
    ds, ds2 = _scrambled_outside_train(ppath)
    split = split_for(ds, ppath)
    plain = calibrate(ds, split, ppath, None, n_users=25, use_llm=False, seed=3, show_progress=False)
    a = calibrate(ds, split, ppath, None, n_users=25, use_llm=False, seed=3, show_progress=False, hard_negatives=1)
    b = calibrate(ds2, split_for(ds2, ppath), ppath, None, n_users=25, use_llm=False, seed=3, show_progress=False,
                  hard_negatives=1)
    assert a["models"] == b["models"] and a["report"] == b["report"]  # drawn from the train part's evidence only
    assert a["hard_negatives"] == 1 and "hard_negatives" not in plain
    n_pos = plain["report"]["twin"]["n_like_rows"] // 3  # a positive, a uniform and a matched negative each
    assert plain["report"]["twin"]["n_like_rows"] < a["report"]["twin"]["n_like_rows"] <= 4 * n_pos
    assert a["models"]["twin"]["like_coef"] != plain["models"]["twin"]["like_coef"]
    check_calibration(a, split, FidelityConfig(hard_negatives=1), ppath)
    with pytest.raises(FidelityError, match="1 hard negatives a positive and 3 rows a user, not this run's"):
        check_calibration(a, split, FidelityConfig(), ppath)
    assert FidelityConfig(hard_negatives=1).config_hash() != FidelityConfig().config_hash()


def test_calibration_rows_a_user_are_recorded_and_a_run_asking_otherwise_is_refused(fidelity_run):
    from evals.validity.fidelity import FidelityError, check_calibration
    from evals.validity.grounding import split_for

    out, _ = fidelity_run
    ppath = out / "personas" / "personas.jsonl"
    ds = _scrambled_outside_train(ppath)[0]
    split = split_for(ds, ppath)
    three = calibrate(ds, split, ppath, None, n_users=25, use_llm=False, seed=3, show_progress=False)
    six = calibrate(ds, split, ppath, None, n_users=25, use_llm=False, seed=3, show_progress=False, per_user=6)
    assert (three["per_user"], six["per_user"]) == (3, 6)
    assert six["report"]["twin"]["n_like_rows"] > three["report"]["twin"]["n_like_rows"]
    check_calibration(six, split, FidelityConfig(calibration_per_user=6), ppath)
    with pytest.raises(FidelityError, match="6 rows a user, not this run's"):
        check_calibration(six, split, FidelityConfig(), ppath)
    # out of the hash at its default (the hashes the docs cite still name their runs), in it otherwise
    assert FidelityConfig(calibration_per_user=3).config_hash() == FidelityConfig().config_hash()
    assert FidelityConfig(calibration_per_user=6).config_hash() != FidelityConfig().config_hash()


def test_a_calibration_for_other_personas_or_split_is_refused(fidelity_run, tmp_path):
    out, _ = fidelity_run
    pdir = tmp_path / "personas"
    shutil.copytree(out / "personas", pdir)
    ppath = pdir / "personas.jsonl"
    read_calibration(ppath)  # the copy matches
    cal = json.loads((pdir / "calibration.json").read_text())
    (pdir / "calibration.json").write_text(json.dumps({**cal, "version": 1, "features": [f for f in cal["features"] if f != "cf"]}))
    with pytest.raises(CalibrationError, match="other evidence features"):  # a calibration from before the cf feature
        read_calibration(ppath)
    (pdir / "calibration.json").write_text(json.dumps({**cal, "seed": "0"}))  # grounded users ask their judgements with it
    with pytest.raises(CalibrationError, match="calibration.json: field 'seed' must be an integer, got '0'"):
        read_calibration(ppath)
    (pdir / "calibration.json").write_text(json.dumps(cal))
    ppath.write_text(ppath.read_text().replace('"size":', '"size": ', 1))  # same cards, other bytes
    with pytest.raises(CalibrationError, match="another personas file"):
        read_calibration(ppath)
    record = json.loads((pdir / "split.json").read_text())
    (pdir / "split.json").write_text(json.dumps({**record, "split": "ml-100k:time-holdout-0.3"}))
    from personas.infra.assets import ml100k_dir
    from recsys import load_movielens, time_split

    ds = load_movielens(ml100k_dir())
    with pytest.raises(CalibrationError, match="extracted for split"):
        calibrate(ds, time_split(ds, 0.2), ppath, None, n_users=10, use_llm=False, show_progress=False)
    with pytest.raises(CalibrationError, match="extracted for split"):  # nor on the same rule's other split
        calibrate(ds, make_split(ds, "global", 0.2), ppath, None, n_users=10, use_llm=False, show_progress=False)


def test_a_calibration_without_base_rates_is_refused_with_the_command_that_refits_it(fidelity_run, tmp_path):
    out, _ = fidelity_run
    pdir = tmp_path / "personas"
    shutil.copytree(out / "personas", pdir)
    cal = json.loads((pdir / "calibration.json").read_text())
    for m in cal["models"].values():
        for key in ("take_level", "watched_coef", "watched_intercept"):
            m.pop(key)  # as an older personasim wrote it
    (pdir / "calibration.json").write_text(json.dumps(cal))
    with pytest.raises(CalibrationError, match="no base rates.*rerun `personasim calibrate --personas"):
        read_calibration(pdir / "personas.jsonl")


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    one_line_error(cli("validate", "fidelity", "--dataset", "ml-1m", "--out", str(tmp_path / "x"), "--no-llm"),
                   "--dataset")
    assert not (tmp_path / "x").exists()
    one_line_error(cli("validate", "fidelity", "--out", str(tmp_path / "y"), "--users", "2", "--no-llm"), "--users")
    one_line_error(cli("validate", "fidelity", "--out", str(tmp_path / "z"), "--layers", "mood", "--no-llm"),
                   "--layers")
    assert not (tmp_path / "z").exists()
    one_line_error(cli("validate", "fidelity", "--out", str(tmp_path / "z"), "--calibration-per-user", "0",
                       "--no-llm"), "--calibration-per-user")
    assert not (tmp_path / "z").exists()
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    one_line_error(cli("validate", "fidelity", "--out", str(a_file), "--no-llm"), "not a folder")
    one_line_error(cli("calibrate", "--personas", str(ROOT / "tests" / "data" / "personas_movies.jsonl"), "--no-llm"),
                   "split.json")
    one_line_error(cli("calibrate", "--personas", str(tmp_path / "none.jsonl"), "--no-llm"), "none.jsonl")


def test_a_calibration_without_rating_cutpoints_serves_the_expected_rule_and_refuses_the_matched_one(fidelity_run,
                                                                                                  tmp_path):
    from evals.campaign.config import CampaignConfig
    from evals.campaign.world import _grounding
    from personas.infra.assets import ml100k_dir
    from recsys import load_movielens

    out, _ = fidelity_run
    pdir = tmp_path / "personas"
    shutil.copytree(out / "personas", pdir)
    cal = json.loads((pdir / "calibration.json").read_text())
    for m in cal["models"].values():
        del m["rating_cuts"]  # as written before the matched rule existed
    (pdir / "calibration.json").write_text(json.dumps(cal))
    ds = load_movielens(ml100k_dir())

    def cfg(rule):
        return CampaignConfig.model_validate({"personas": {"path": str(pdir / "personas.jsonl")}, "variants": ["mf"],
                                              "grounding": {"rating_rule": rule}})

    assert _grounding(cfg("expected"), pdir / "personas.jsonl", ds).rating_rule == "expected"
    with pytest.raises(CalibrationError, match="calibration.json: no rating cutpoints for the 'matched' rating rule"):
        _grounding(cfg("matched"), pdir / "personas.jsonl", ds)
    # a campaign that reuses these personas stops before it trains or writes anything
    (tmp_path / "c.yaml").write_text(f"personas: {{path: {pdir / 'personas.jsonl'}}}\nvariants: [mf]\n"
                                     "user_variants: [grounded]\ngrounding: {rating_rule: matched}\n")
    one_line_error(cli("campaign", "run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "out")),
                   "calibration.json: no rating cutpoints for the 'matched' rating rule")
    assert not (tmp_path / "out").exists()


def test_pooled_auc_is_scikit_learns_roc_auc_with_ties():
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from evals.stats.bootstrap import pooled_auc

    rng = np.random.default_rng(1)
    records = [(rng.integers(0, 2, 7), np.round(rng.normal(size=7), 1)) for _ in range(40)]  # many tied scores
    y, s = np.concatenate([r[0] for r in records]), np.concatenate([r[1] for r in records])
    assert pooled_auc(records) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert pooled_auc([(np.ones(3, int), np.arange(3.0))]) is None  # one class: undefined


def test_the_within_user_auc_ignores_a_users_shift_of_all_its_items_where_the_pooled_auc_does_not():
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from evals.stats.bootstrap import pooled_auc
    from evals.validity.fidelity_tables import within_user_auc, within_user_taste

    rng = np.random.default_rng(3)
    y = [np.array([1, 1, 0, 0]) for _ in range(80)]
    scores = [np.array([1.0, 0.2, 0.5, -0.3]) + rng.normal(0, 0.3, 4) for _ in range(80)]
    shifted = [s + rng.normal(0, 3) for s in scores]  # each user's items moved alike ("20 minutes")
    plain, moved = list(zip(y, scores)), list(zip(y, shifted))
    per_user = within_user_auc(plain)
    assert np.allclose(per_user, within_user_auc(moved)) and np.allclose(per_user, [roc_auc_score(*r) for r in plain])
    assert pooled_auc(moved) < pooled_auc(plain) - 0.1  # the pooled AUC mixes the users' levels
    assert np.isnan(within_user_auc([(np.ones(2, int), np.array([0.1, 0.2]))])[0])  # one class: undefined

    class Cfg:
        n_boot, seed = 200, 0

    taste = {("uniform", 1, "twin"): moved, ("uniform", 1, "twin_without_layers"): plain,
             ("uniform", 1, "popularity"): list(zip(y, [rng.normal(0, 1, 4) for _ in range(80)])),
             ("uniform", 3, "twin"): moved}
    out = within_user_taste(taste, Cfg, rules=("popularity",))
    assert {(r["method"], r["n_users"]) for r in out["auc"]} == {("twin", 80), ("twin_without_layers", 80),
                                                                 ("popularity", 80)}  # 1:1 only
    diffs = {(d["method"], d["rule"]): d["diff"] for d in out["differences"]}
    assert set(diffs) == {("twin", "popularity"), ("twin", "twin_without_layers"), ("twin_without_layers", "popularity")}
    assert diffs[("twin", "twin_without_layers")] == {"value": 0.0, "ci": [0.0, 0.0]}  # the same order in each user
    assert diffs[("twin", "popularity")]["ci"][0] > 0


def test_the_pooled_auc_bootstrap_draws_are_those_of_resampling_the_lists():
    """`bootstrap_pooled_auc` weights users instead of building a list per resample: the same CI, to the bit,
    with tied scores, users of one class only, and resamples where a class vanishes."""
    import numpy as np

    from evals.stats.bootstrap import bootstrap_ci, bootstrap_pooled_auc, pooled_auc, resample_indices

    rng = np.random.default_rng(2)
    records = [(rng.integers(0, 2, rng.integers(1, 9)), np.round(rng.normal(size=9), 1)) for _ in range(60)]
    records = [(y, s[:len(y)]) for y, s in records] + [(np.ones(2, int), np.array([0.3, 0.1]))]
    small = [(np.ones(2, int), np.array([0.3, 0.1])), (np.zeros(3, int), np.array([0.2, 0.1, 0.5]))]
    for recs, seed in ((records, 0), (small, 5)):
        slow = bootstrap_ci(recs, pooled_auc, n_boot=400, seed=seed)
        assert bootstrap_pooled_auc(recs, n_boot=400, seed=seed, block=150) == slow
        draws = [pooled_auc([recs[i] for i in idx]) for idx in resample_indices(len(recs), n_boot=400, seed=seed)]
        assert any(d is None for d in draws) == (seed == 5)  # the small case does lose a class in some resamples


def test_a_campaign_with_grounded_users_measures_their_fidelity_before_its_sessions(fidelity_run, tmp_path):
    """`prepare` writes OUT/fidelity.json from the campaign's own personas and calibration, once; the report reads it."""
    from evals.campaign.config import CampaignConfig
    from evals.report.summary import validity
    from evals.validity.verdicts import fidelity_row
    from evals.campaign.world import prepare

    out, _ = fidelity_run
    pdir = tmp_path / "personas"
    shutil.copytree(out / "personas", pdir)

    def cfg(**grounding):
        return CampaignConfig.model_validate({
            "personas": {"path": str(pdir / "personas.jsonl")}, "variants": ["mf"], "user_variants": ["grounded"],
            "turns": 2, "slate_size": 4, "recsys": {"dim": 8, "epochs": 1, "mixture_k": 2},
            "grounding": {"calibration_users": 40, "fidelity_users": 8, "fidelity_ab_users": 4, **grounding}})

    run = tmp_path / "run"
    prepare(cfg(), run, show_progress=False)
    record = json.loads((run / "fidelity.json").read_text())
    cal = json.loads((pdir / "calibration.json").read_text())
    assert record["source"] == "campaign" and record["campaign_config_hash"] == cfg().config_hash()
    # these personas are of a validation split (the fidelity run's): a validation read, not counted as a test read
    from evals.validity.read_ledger import counted_reads, test_reads_path
    assert record["read"] == "validation" and run.as_posix() not in {r["out"] for r in counted_reads(test_reads_path())}
    assert record["n_users"] == 8 and record["ab_fidelity"]["n_sim_users"] == 4
    assert record["calibration_features"] == cal["features"] and record["split"] == cal["split"]
    assert record["config"]["slate_size"] == 4 and record["config"]["ab_turns"] == 2  # the campaign's pages
    # llm_feature (default true) says how to fit a new calibration; this one has no LLM feature, nor has the check
    assert record["config"]["use_llm"] is False and record["model"] == ""
    assert set(record["headline"]["targets"]) >= {"auc_1to1_matched >= 0.70", "rmse below user-mean"}
    before = (run / "fidelity.json").stat().st_mtime_ns
    prepare(cfg(), run, show_progress=False)  # a resumed campaign does not measure again
    assert (run / "fidelity.json").stat().st_mtime_ns == before
    shown = validity(run, cfg())["fidelity"]
    row = fidelity_row(shown)
    assert row["figure"].startswith("this campaign's grounded users, 8 held-out users: twin accuracy"), row
    # the report sets the simulated users beside the same run's baselines, each figure with its CI
    against = {r["method"]: r for r in shown["against"]}
    assert [r["method"] for r in shown["against"]][:2] == ["twin", "persona"]
    acc = next(r["accuracy"] for r in record["taste_alignment"]
               if (r["negatives"], r["ratio"], r["method"]) == ("uniform", "1:1", "twin"))
    assert against["twin"]["accuracy 1:1 uniform"] == f"{acc['value']:.3f} [{acc['ci'][0]:.3f}, {acc['ci'][1]:.3f}]"
    assert against["user_mean"]["accuracy 1:1 uniform"] == "" and against["user_mean"]["rating RMSE"]
    assert {"popularity", "persona_cf", "random", "item_mean"} <= set(against)
    assert shown["population"] and {"statistic", "W twin", "W average_user"} <= set(shown["population"][0])
    # MovieLens users with a split: the report measures real users' own drift at this design, once
    real = validity(run, cfg())["real_drift"]
    assert (run / "real_drift.json").is_file() and real["design"]["users_per_persona"] == cfg().users_for("grounded")
    assert real["design"]["q025"] <= real["design"]["median"] <= real["design"]["q975"]
    assert record["config"]["layers"] == ["subtopic", "context"]  # the campaign's users are measured as they play
    prepare(cfg(layers=[]), tmp_path / "bare", show_progress=False)
    bare = json.loads((tmp_path / "bare" / "fidelity.json").read_text())
    assert bare["config"]["layers"] == [] and bare["taste_with_layers_minus_without"] == []
    prepare(cfg(fidelity_users=0), tmp_path / "skipped", show_progress=False)
    assert not (tmp_path / "skipped" / "fidelity.json").exists()
    with pytest.raises(ValueError, match="3 users cannot give a bootstrap CI"):
        cfg(fidelity_users=3)


def test_a_cut_outside_the_data_or_too_late_is_one_line_and_no_folder(tmp_path):
    for cut, words in (("2001-01-01", "outside the data"), ("1998-04-22", "choose an earlier cut"),
                       ("not-a-date", "not an ISO date")):
        one_line_error(cli("validate", "fidelity", "--cut", cut, "--out", str(tmp_path / "x")), words)
        assert not (tmp_path / "x").exists()
    one_line_error(cli("validate", "fidelity", "--split", "per-user", "--cut", "1998-03-01", "--out",
                       str(tmp_path / "y")), "a cut time is for the global split only")
    assert not (tmp_path / "y").exists()
