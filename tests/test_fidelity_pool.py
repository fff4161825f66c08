"""A/B fidelity over a pool and the circularity check (evals.validity.pool) on a small world: 15 twins of 3
personas assigned by hand (no embedding), a calibration on 20 users, a pool of five recommenders, one that
fails, and the two probes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import kendalltau, spearmanr

from evals.validity.pool import offline_truth, run_pool
from evals.validity.pool_members import EvidenceProbe, Member, probes
from evals.validity.pool_orders import FAMILIES, Resampled, ablated_judges, fit_without, order_agreement, verdict


def _broken(inputs):
    raise RuntimeError("this recommender cannot train")


def _registry(name):
    from evals.validity.pool_members import _registry as fit

    return fit(name)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(dataset, split, personas path, FidelityConfig, the run): personas written by hand (user index mod 3)."""
    from evals.validity.fidelity import FidelityConfig
    from evals.validity.grounding import write_split_record
    from personas.card import PersonaCard, write_personas
    from personas.infra.assets import ml100k_dir
    from personas.infra.files import write_whole
    from recsys import load_movielens, time_split
    from recsys.pipeline import Reranker

    out = tmp_path_factory.mktemp("pool")
    ds = load_movielens(ml100k_dir())
    split = time_split(ds, 0.2)
    pdir = out / "personas"
    pdir.mkdir()
    write_personas([PersonaCard(id=f"p{k}", name=f"persona {k}", summary="a test persona") for k in range(3)],
                   pdir / "personas.jsonl")
    rows = [{"doc_id": str(u), "persona_id": f"p{i % 3}", "status": "assigned"}
            for i, u in enumerate(ds.users["user_id"])]
    write_whole(pdir / "assignments.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    write_split_record(pdir, split)
    cfg = FidelityConfig(n_personas=3, calibration_users=20, use_llm=False, n_boot=200, seed=0)
    members = [Member("random", "random", fit=lambda i: None), Member("pop", "popularity", fit=_registry("pop")),
               Member("broken", "test", fit=_broken), Member("itemknn", "neighbourhood", fit=_registry("itemknn")),
               Member("ease", "linear", fit=_registry("ease")),
               Member("ease+mmr@0.7", "reranked", base="ease", reranker=Reranker("mmr", 0.7)),
               Member("broken+mmr@0.7", "reranked", base="broken", reranker=Reranker("mmr", 0.7))]
    run = run_pool(ds, split, out, cfg, None, members=members, probe_members=probes(), n_twins=15, show_progress=False)
    return ds, split, pdir / "personas.jsonl", cfg, run


def test_the_record_has_every_field(world):
    *_, run = world
    r = run.record
    for key in ("version", "split", "seed", "config", "config_hash", "calibration_features", "n_offline_users",
                "n_twins", "pool", "close_competitors", "probes", "recommenders", "offline_order", "simulated_order",
                "orders", "pairs", "agreement", "calibration_check", "ablated_models", "circularity",
                "targets", "protocol", "timings_s"):
        assert key in r, key
    assert r["n_twins"] == 15 and r["n_offline_users"] > 800 and not r["all_twins"]
    assert r["pool"] == ["random", "pop", "itemknn", "ease", "ease+mmr@0.7"]
    assert r["probes"] == ["ease-probe", "svd-probe"]
    ok = [row for row in r["recommenders"] if row["status"] == "ok"]
    for row in ok:
        for m in ("recall@10", "ndcg@10", "like_rate"):
            lo, hi = row[m]["ci"]
            assert lo <= row[m]["value"] <= hi, (row["recommender"], m)
    for name in ("recall@10", "ndcg@10"):
        o = r["orders"][name]
        assert o["n_recommenders"] == 5 and -1 <= o["kendall_tau"]["value"] <= 1 and "spearman_rho" in o
    assert len(r["pairs"]) == 10  # every pair of the pool, the better offline first
    for p in r["pairs"]:
        assert p["offline_recall"]["diff"] >= 0
        assert p["verdict"] in ("agree", "disagree", "reversed-significantly", "simulator-orders-offline-does-not",
                                "neither-orders")
        for key in ("offline_recall", "simulated"):
            assert {"diff", "ci", "p", "p_holm", "significant"} <= set(p[key])
        assert {"diff", "ci"} <= set(p["offline_ndcg"])
    a = r["agreement"]
    assert a["agree"] + a["disagree"] + a["reversed-significantly"] == a["n_offline_significant"]
    assert "simulator_orders_offline_does_not" in a and "offline_orders_simulator_does_not" in a
    c = r["circularity"]
    assert set(c["families"]) == {"item-knn", "svd", "ease", "popularity", "persona", "genre"}  # no LLM feature
    for fam, v in c["families"].items():
        assert [row["recommender"] for row in v["ranks"]] == r["pool"]
        assert all(row["lift"] == row["rank_without"] - row["rank_full"] for row in v["ranks"])
        assert set(v["kin_lift"]) == {n for n in r["pool"] if row_kin(v, n)}
    assert {p["probe"] for p in c["probes"]} == {"ease-probe", "svd-probe"}
    for p in c["probes"]:
        assert {"rank_offline", "rank_full", "rank_without", "beaten_offline_by", "promoted_over"} <= set(p)
        assert set(p["rank_by_simulator"]) == {"full", *c["families"]}
        assert p["rank_by_simulator"][p["family"]] == p["rank_without"]
        assert set(p["promoted_over"]) <= set(p["beaten_offline_by"])
    assert len(r["targets"]) == 5 and all(isinstance(v, bool) for v in r["targets"].values())
    # the mitigation: each member judged without its own family's evidence, from the same per-user like rates
    blind = r["orders"]["kin_blind_recall@10"]
    assert blind["judged_by"] == {"random": "full", "pop": "popularity", "itemknn": "item-knn", "ease": "ease",
                                  "ease+mmr@0.7": "full"}
    assert blind["n_recommenders"] == 5 and blind["ceiling"] == r["orders"]["recall@10"]["ceiling"]
    from evals.validity.pool_orders import kin_blind

    rates, _ = kin_blind(r["pool"], run.simulated)
    assert rates["pop"] is run.simulated["popularity"]["pop"] and rates["random"] is run.simulated["full"]["random"]
    assert r["calibration_check"]["refit_equals_calibration"]
    json.dumps(r)  # JSON as it is
    # the per-user arrays behind every figure, for paired tests
    assert all(len(v["recall"]) == r["n_offline_users"] for v in run.offline.values())
    assert set(run.simulated) == {"full", *c["families"]}
    assert all(len(x) == 15 for sims in run.simulated.values() for x in sims.values())


def row_kin(family: dict, name: str) -> bool:
    return next(row["kin"] for row in family["ranks"] if row["recommender"] == name)


def test_a_recommender_that_fails_to_train_is_a_failed_row_and_the_others_run(world):
    *_, run = world
    rows = {row["recommender"]: row for row in run.record["recommenders"]}
    assert rows["broken"]["status"] == "failed" and "cannot train" in rows["broken"]["error"]
    assert rows["broken+mmr@0.7"]["status"] == "failed" and "'broken'" in rows["broken+mmr@0.7"]["error"]
    assert "broken" not in run.record["pool"] and all(p["a"] != "broken" and p["b"] != "broken"
                                                       for p in run.record["pairs"])
    assert all(rows[n]["status"] == "ok" for n in ("random", "pop", "itemknn", "ease", "ease+mmr@0.7"))
    # the others are measured as usual: random is last offline, and the reranker is not its base
    assert run.record["offline_order"][-1] == "random"
    assert not np.array_equal(run.offline["ease"]["recall"], run.offline["ease+mmr@0.7"]["recall"])


def test_the_ablated_simulator_has_no_weight_on_the_family_it_leaves_out(world):
    from simulator.evidence import factors

    *_, run = world
    full = run.judges["full"]
    assert set(run.judges) == {"full", *(f for f in FAMILIES if f != "llm")}  # one refit a family (no LLM feature)
    for fam, model in run.judges.items():
        if fam == "full":
            continue
        base = FAMILIES[fam]
        assert not any(set(factors(f)) & set(base) for f in model.features), fam
        assert len(model.like_coef) == len(model.watched_coef) == len(model.features) == len(model.rating_coef) - 2
        assert "n_rated" in model.features and set(model.features) < set(full.features)
        assert run.record["ablated_models"][fam]["features"] == model.features
        # its decision cannot move with the family's values: scramble those columns, the logits stay
        X = np.random.default_rng(0).normal(size=(6, len(full.features)))
        cols = [full.features.index(f) for f in model.features]
        Y = X.copy()
        gone = [j for j in range(len(full.features)) if j not in cols]
        Y[:, gone] = np.random.default_rng(1).normal(size=(6, len(gone))) * 100
        assert np.allclose(model.like_logit(X[:, cols]), model.like_logit(Y[:, cols]))
        assert np.allclose(model.p_like_watched(X[:, cols]), model.p_like_watched(Y[:, cols]))
        # refitted, not the full model with columns cut: the weights it keeps moved
        kept = [full.like_coef[full.features.index(f)] for f in model.features]
        assert not np.allclose(kept, model.like_coef), fam
    # and the refit with nothing left out is the calibration itself (the rows are the calibration's)
    assert run.record["calibration_check"]["refit_equals_calibration"]


def _rows(seed: int, n: int = 120):
    """Calibration rows (`calibration.Rows`) of random features: like, rating, take and like-given-watched parts."""
    from evals.validity.calibration import TAKE_K, Rows
    from simulator.evidence import EVIDENCE

    rng = np.random.default_rng(seed)
    F = len(EVIDENCE)
    y = np.arange(n) % 2
    X = rng.normal(size=(n, F)) + y[:, None] * 0.5
    return Rows(X=list(X), y=y.tolist(), Xr=list(rng.normal(size=(n, F))), r=rng.integers(1, 6, n).tolist(),
                um=rng.normal(3.5, 0.3, n).tolist(), im=rng.normal(3.5, 0.3, n).tolist(),
                Xt=[rng.normal(size=(TAKE_K, F)) for _ in range(20)], hits=rng.integers(0, 3, 20).tolist(),
                Xw=list(rng.normal(size=(n, F))), w=(np.arange(n) % 3 == 0).astype(int).tolist(),
                wr=np.where(np.arange(n) % 3 == 0, 4, 2).tolist(), wg=(np.arange(n) % 12).tolist(),
                wum=rng.normal(3.5, 0.3, n).tolist(), wim=rng.normal(3.5, 0.3, n).tolist())


def test_a_refit_that_does_not_give_the_calibration_back_is_refused():
    from simulator.evidence import EVIDENCE

    rows = _rows(0)
    full = fit_without(rows, list(EVIDENCE), (), 0)
    sims, check = ablated_judges(full, rows, 0)  # the rows it was fitted on: accepted
    assert check["refit_equals_calibration"] and set(sims) == {"full", *(f for f in FAMILIES if f != "llm")}
    assert sims["svd"].features == [f for f in EVIDENCE if f not in ("cf", "cf*n_rated")]
    with pytest.raises(ValueError, match="no longer repeats calibrate"):
        ablated_judges(full, _rows(1), 0)  # other rows: the ablations would not be comparable


def test_tau_and_rho_are_scipys_on_a_constructed_case():
    rng = np.random.default_rng(0)
    off_means = np.array([0.05, 0.10, 0.15, 0.20, 0.25])
    sim_means = np.array([0.02, 0.05, 0.04, 0.08, 0.09])  # one swap: tau = (9 - 1) / 10 = 0.8
    off = off_means[:, None] + rng.normal(0, 0.01, (5, 400))
    off -= off.mean(1, keepdims=True) - off_means[:, None]
    twin_at = np.arange(0, 400, 2)
    sim = sim_means[:, None] + rng.normal(0, 0.01, (5, 200))
    sim -= sim.mean(1, keepdims=True) - sim_means[:, None]
    o = order_agreement(sim, off, Resampled(400, twin_at, n_boot=200, seed=0))
    assert o["kendall_tau"]["value"] == pytest.approx(0.8)
    assert o["kendall_tau"]["value"] == pytest.approx(kendalltau(sim_means, off_means).statistic)
    assert o["spearman_rho"]["value"] == pytest.approx(spearmanr(sim_means, off_means).statistic)
    assert o["kendall_tau"]["ci"][0] <= 0.8 <= o["kendall_tau"]["ci"][1] and o["n_recommenders"] == 5
    # tiny noise: every resample keeps the orders, so the CI closes on the point
    tight = order_agreement(sim_means[:, None] + 0 * sim, off_means[:, None] + 0 * off,
                            Resampled(400, twin_at, n_boot=100, seed=1))
    assert tight["kendall_tau"]["ci"] == [0.8, 0.8]


def test_offline_truth_and_the_verdicts_on_known_answers():
    top = {"a": {7: np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])}}
    out = offline_truth(top, {7: {1, 3, 99}}, np.array([7]))
    assert out["a"]["recall"][0] == pytest.approx(2 / 3)
    ideal = 1 + 1 / np.log2(3) + 1 / np.log2(4)
    assert out["a"]["ndcg"][0] == pytest.approx((1 + 1 / np.log2(4)) / ideal)
    sig = {"diff": 0.02, "significant": True}
    assert verdict(sig, {"diff": 0.01, "significant": False}) == "agree"
    assert verdict(sig, {"diff": -0.01, "significant": False}) == "disagree"
    assert verdict(sig, {"diff": -0.01, "significant": True}) == "reversed-significantly"
    assert verdict({"diff": 0.0, "significant": False}, {"diff": 0.03, "significant": True}) == \
        "simulator-orders-offline-does-not"


def test_the_probes_rank_as_the_simulators_own_evidence(world):
    ds, split, *_ = world
    from evals.validity.grounding import item_space
    from simulator.evidence import Memory, cf_percentile, ease_percentile

    space = item_space(ds, split.train)
    train = split.train
    u = int(train["user"].iloc[0])
    items = train.loc[train["user"] == u, "item"].to_numpy()
    watched = np.zeros(ds.n_items, np.float32)
    watched[items] = 1
    memory = Memory(key="t", kind="twin", persona_id="p0", liked=items, disliked=items[:0], recent=items[:3],
                    mean_rating=3.5, persona_share=np.zeros(ds.n_items), taste=space.factors[items].sum(0),
                    watched=watched)
    for kind, pct in (("ease", ease_percentile), ("svd", cf_percentile)):
        probe = EvidenceProbe(kind, space, train).fit(split.train_positives())
        scores = probe.score_all(np.array([u]))[0]
        top = np.argsort(-scores, kind="stable")[:50]
        assert np.all(np.diff(pct(space, memory)[top]) <= 1e-12), kind  # the percentile falls along the probe's list


def test_tuned_als_picks_the_validation_best_and_never_reads_test():
    """`tuned_als` chooses on the split's validation split (its train part cut again) and refits on train: with
    the test part taken away it makes the same choice, and that choice is the best of its grid there."""
    import dataclasses

    from evals.validity.fidelity_ab import rank_unseen
    from evals.validity.pool_members import PoolInputs, tuned_als
    from personas.infra.assets import ml100k_dir
    from recsys import load_movielens, time_split
    from recsys.library import ALS
    from recsys.registry import Settings

    ds = load_movielens(ml100k_dir())
    split = time_split(ds, 0.2)
    blind = dataclasses.replace(split, test=None)  # a read of the test part would fail
    grid = {"factors": (16,), "regularization": (0.05, 50.0), "alpha": (1.0,)}
    model = tuned_als(PoolInputs(split.train_positives(), split.train, None, Settings(None, seed=0), split=blind), grid)
    t = model.tuned
    assert t["validation"] == split.inner().key and t["grid"]["regularization"] == [0.05, 50.0]
    inner = split.inner()
    pos = inner.test[inner.test["rating"] >= 4].groupby("user")["item"].apply(set).to_dict()
    users = np.array(sorted(pos))
    seen = inner.train.groupby("user")["item"].apply(set).to_dict()
    recalls = []
    for r in (0.05, 50.0):
        als = ALS(seed=0, factors=16, regularization=r, alpha=1.0).fit(inner.train_positives())
        ranked = rank_unseen({"als": als}, users, seen, inner.n_items, 10, 0)
        recalls.append(float(offline_truth(ranked, pos, users)["als"]["recall"].mean()))
    assert recalls[0] != recalls[1]
    assert t["params"]["regularization"] == (0.05, 50.0)[int(np.argmax(recalls))]
    assert t["validation_recall@10"] == round(max(recalls), 4)
    assert model.user_factors.shape[0] == split.n_users  # refitted on the whole train part


def test_the_order_ceiling_is_high_for_a_clear_order_and_near_zero_for_noise():
    """`order_ceiling`: recommenders far apart (relative to the users' spread) give an order any n-user sample
    reproduces (tau near 1); recommenders that do not differ give orders that agree only by chance (near 0)."""
    from evals.validity.pool_orders import order_ceiling

    rng = np.random.default_rng(0)
    n = 200
    boot = Resampled(n, np.arange(n), n_boot=300, seed=0)
    clear = np.arange(6)[:, None] * 1.0 + rng.normal(0, 1, (6, n))
    noise = rng.normal(0, 1, (6, n))
    c, z = order_ceiling(clear, boot, seed=0), order_ceiling(noise, boot, seed=0)
    assert c["bootstrap"]["median"] >= 0.99 and c["split_half"]["median"] >= 0.99
    assert abs(z["split_half"]["median"]) <= 0.3 and z["split_half"]["range_95"][0] < 0 < z["split_half"]["range_95"][1]
    assert c["n_users"] == n


def test_more_draws_a_page_average_away_the_monte_carlo_noise_of_the_simulated_measure(world):
    from evals.validity.fidelity import FidelityConfig
    from evals.validity.grounding import item_space, memories, read_assignments
    from evals.validity.pool import World, judge_pool
    from personas.card import read_personas

    ds, split, ppath, cfg, run = world
    space = item_space(ds, split.train)
    w = World(None, {c.id: c for c in read_personas(ppath)}, space,
              memories(ds, split.train, read_assignments(ppath.parent), space), ds.users["user_id"].astype(str).to_numpy())
    rng = np.random.default_rng(0)
    popular = np.argsort(-space.log_pop, kind="stable")[:40]
    ranked = {name: {int(u): rng.permutation(popular)[:10] for u in run.twins} for name in ("a", "b")}
    judges = {"full": run.judges["full"]}

    def rates(draws: int) -> np.ndarray:
        got = judge_pool(ranked, run.twins, w, judges, cfg.model_copy(update={"pool_draws": draws}))["full"]
        return np.stack([got["a"], got["b"]])

    one, four, many = rates(1), rates(4), rates(30)
    np.testing.assert_allclose(four * 10 * 4, np.round(four * 10 * 4))  # a mean over 4 draws of 10 shown items
    assert not np.array_equal(one, four)
    # against a 30-draw mean, a 4-draw mean is off by about a quarter of what one draw is (variance 1/4)
    assert np.mean((four - many) ** 2) < 0.5 * np.mean((one - many) ** 2)
    assert FidelityConfig(pool_draws=1).config_hash() == FidelityConfig().config_hash() != \
        FidelityConfig(pool_draws=2).config_hash()


def test_a_lift_past_the_offline_rank_is_told_from_one_towards_it():
    from evals.validity.pool_orders import circularity

    pool = ["mf", "recent-pop", "pop", "random"]
    members = {"mf": Member("mf", "factorised"), "recent-pop": Member("recent-pop", "recency"),
               "pop": Member("pop", "popularity"), "random": Member("random", "random")}
    noise = np.random.default_rng(0).normal(0, 1e-4, (4, 200))

    def arrays(means):
        return {n: m + noise[i] - noise[i].mean() for i, (n, m) in enumerate(zip(pool, means))}

    off = arrays([0.30, 0.20, 0.10, 0.00])  # offline: mf 1st, recent-pop 2nd, pop 3rd
    boot = Resampled(200, np.arange(200), n_boot=100, seed=0)
    without = arrays([0.30, -0.01, 0.20, 0.00])  # without the popularity evidence recent-pop falls to 4th
    for full_recent, past in ((0.40, ["recent-pop"]), (0.25, [])):  # 1st with it (past its offline 2nd), or 2nd
        sims = {"full": arrays([0.30, full_recent, 0.10, 0.00]), "popularity": without}
        c = circularity(pool, members, off, sims, boot, seed=0, n_boot=100)
        assert c["kin_lifted_more_than_one_rank"] == ["recent-pop"]  # lifted by > 1 rank either way
        assert c["kin_lifted_past_offline_rank"] == past == c["families"]["popularity"]["kin_lifted_past_offline"]


def test_the_benchmark_refuses_a_bad_draw_count_in_one_line_before_any_work(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for args, needle in ((["--draws", "0"], "--draws: must be at least 1, got 0"),
                         (["--hard-negatives", "-1"], "--hard-negatives: must be at least 0, got -1"),
                         (["--calibration-per-user", "0"], "--calibration-per-user: must be at least 1, got 0")):
        res = subprocess.run([sys.executable, "benchmarks/fidelity_pool.py", *args, "--out", str(tmp_path / "o")],
                             capture_output=True, text=True, cwd=root, timeout=120)
        assert res.returncode == 2 and res.stderr.strip() == f"error: {needle}" and not (tmp_path / "o").exists()
