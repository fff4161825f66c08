"""The bench end to end on a small planted data set (CSV + catalog), and the CLI's error path."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from personas.infra.files import write_whole
from recsys import TrainConfig, load_interactions
from recsys.bench import BenchConfig, run_bench
from tests.recsys_fixtures import planted


def _write(tmp_path):
    train, _, item_cluster, _ = planted(n_clusters=4, items_per=15, n_users=60, per_user=12)
    coo = train.tocoo()
    rng = np.random.default_rng(0)
    inter = pd.DataFrame({"user_id": coo.row, "item_id": [f"i{c}" for c in coo.col], "rating": 5.0,
                          "timestamp": rng.permutation(len(coo.row)).astype(float)})
    names = np.array(["Action", "Comedy", "Drama", "Horror"])
    cat = pd.DataFrame({"item_id": [f"i{j}" for j in range(len(item_cluster))],
                        "title": [f"movie {j}" for j in range(len(item_cluster))], "genres": names[item_cluster]})
    inter.to_csv(tmp_path / "inter.csv", index=False)
    cat.to_csv(tmp_path / "catalog.csv", index=False)
    return tmp_path / "inter.csv", tmp_path / "catalog.csv"


def test_bench_writes_rows_and_plot(tmp_path):
    inter, cat = _write(tmp_path)
    ds = load_interactions(inter, cat)
    cfg = BenchConfig(seed=3, mixture_ks=[1, 2], pretrained=[2], mmr=[0.5], dpp=[0.5], calibration=[0.5],
                      mixture_cal=[0.5], candidates=20, ampcf_batch=128,
                      train=TrainConfig(dim=8, epochs=2, batch_size=128, loss="softmax"))
    rows = run_bench(ds, tmp_path / "out", cfg, show_progress=False, write=write_whole)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["variant"] for r in saved] == ["pop", "mf", "mf-bpr", "ampcf-k1", "ampcf-k2", "ampcf-k2-mf", "mf+mmr@0.5",
                                            "mf+dpp@0.5", "mf+calibration@0.5", "ampcf-k2+mixture@0.5",
                                            "ampcf-k2-mf+mixture@0.5"]
    assert saved[-2]["model"] == "ampcf-k2" and saved[-2]["ild@10"] != saved[4]["ild@10"]  # the slate was reranked
    assert saved[-1]["model"] == "ampcf-k2-mf" and saved[5]["train_s"] >= saved[1]["train_s"]  # its MF's time counts
    need = {"ndcg@10", "recall@10", "ild@10", "coverage@10", "calibration_kl@10", "taste_coverage@10", "train_s",
            "recommend_ms_per_user", "seed", "config_hash", "model"}
    assert all(need <= set(r) for r in saved) and all(r["seed"] == 3 for r in saved)
    # what a row is, as fields: never parsed back out of its label
    assert [(r["mixture_k"], r["reranker"], r["lambda"]) for r in (saved[1], saved[4], saved[6], saved[-1])] == \
        [(None, None, None), (2, None, None), (None, "mmr", 0.5), (2, "mixture", 0.5)]
    mf = saved[1]
    assert mf["ndcg@10_minus_mf"] == 0.0 and 0.0 <= mf["ndcg@10"] <= 1.0
    assert saved[3]["ndcg@10"] == mf["ndcg@10"]  # K = 1 is MF
    assert (tmp_path / "out" / "pareto.png").stat().st_size > 1000
    assert len(rows) == len(saved)


def test_cli_bench_reports_bad_dataset(tmp_path):
    from evals.cli import app

    missing = tmp_path / "nope.csv"
    result = CliRunner().invoke(app, ["recsys", "bench", "--dataset", str(missing), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "no such file" in result.output


def test_bench_without_genres_falls_back_to_embeddings(tmp_path):
    inter, _ = _write(tmp_path)
    ds = load_interactions(inter)  # no catalog: no genres
    cfg = BenchConfig(mixture_ks=[2], mmr=[0.5], dpp=[], calibration=[0.5], candidates=20,
                      train=TrainConfig(dim=8, epochs=1, batch_size=128, loss="softmax"))
    rows = {r["variant"]: r for r in run_bench(ds, tmp_path / "out", cfg, show_progress=False, write=write_whole)}
    assert "mf+calibration@0.5" not in rows and "mf+mmr@0.5" in rows
    assert 0.0 <= rows["mf"]["ild@10"] <= 2.0 and np.isnan(rows["pop"]["ild@10"])
    assert np.isnan(rows["mf"]["calibration_kl@10"]) and np.isnan(rows["mf"]["taste_coverage@10"])


def test_run_seeds_summarises_mean_and_sd_and_reproduces_each_seed(tmp_path):
    from recsys.bench import run_seeds

    inter, cat = _write(tmp_path)
    ds = load_interactions(inter, cat)
    cfg = BenchConfig(mixture_ks=[2], pretrained=[], mmr=[0.5], dpp=[], calibration=[], mixture_cal=[0.5], candidates=20,
                      ampcf_batch=128,
                      train=TrainConfig(dim=8, epochs=2, batch_size=128, loss="softmax"))
    summary = {r["variant"]: r for r in run_seeds(ds, tmp_path / "multi", cfg, [3, 4], show_progress=False,
                                                  write=write_whole)}
    per_seed = [{r["variant"]: r for r in json.loads((tmp_path / "multi" / f"seed-{s}" / "results.json").read_text())}
                for s in (3, 4)]
    assert set(summary) == {"pop", "mf", "mf-bpr", "ampcf-k2", "mf+mmr@0.5", "ampcf-k2+mixture@0.5"}
    diffs = [p["ampcf-k2"]["ndcg@10_minus_mf"] for p in per_seed]
    lo, hi = summary["ampcf-k2"]["ndcg@10_minus_mf_ci95"]  # paired t interval over the seeds' differences
    assert lo <= np.mean(diffs) <= hi and hi - lo == pytest.approx(2 * 12.706 * np.std(diffs, ddof=1) / np.sqrt(2), rel=1e-3)
    front = json.loads((tmp_path / "multi" / "frontier.json").read_text())
    assert set(front["mf+mmr:ild"]) == {"ampcf-k2", "ampcf-k2+mixture@0.5"}
    assert len(front["mf+best:kl"]["ampcf-k2"]["per_seed"]) == 2
    k2 = [p["ampcf-k2"]["ndcg@10"] for p in per_seed]
    assert summary["ampcf-k2"]["ndcg@10"] == pytest.approx(np.mean(k2))
    assert summary["ampcf-k2"]["ndcg@10_sd"] == pytest.approx(np.std(k2, ddof=1))
    assert summary["mf"]["ndcg@10_minus_mf"] == 0.0 and summary["mf"]["seeds_above_mf"] == 0
    assert [p["mf"]["seed"] for p in per_seed] == [3, 4]
    assert json.loads((tmp_path / "multi" / "summary.json").read_text())[0]["n_seeds"] == 2
    assert (tmp_path / "multi" / "pareto.png").stat().st_size > 1000
    # each seed's run is the single-seed bench, bit for bit
    again = {r["variant"]: r for r in run_bench(ds, tmp_path / "again", replace(cfg, seed=4, train=replace(cfg.train)),
                                                show_progress=False, write=write_whole)}
    assert again["ampcf-k2"]["ndcg@10"] == per_seed[1]["ampcf-k2"]["ndcg@10"]
    with pytest.raises(ValueError, match="two distinct seeds"):
        run_seeds(ds, tmp_path / "bad", cfg, [1, 1], show_progress=False, write=write_whole)


def test_cli_bench_with_seeds_prints_mean_and_sd(tmp_path):
    from evals.cli import app

    inter, cat = _write(tmp_path)
    result = CliRunner().invoke(app, ["recsys", "bench", "--dataset", str(inter), "--catalog", str(cat), "--out",
                                      str(tmp_path / "o"), "--seeds", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "mean ± sd over 2 seeds" in result.output and "ampcf-k8" in result.output
    assert (tmp_path / "o" / "seed-1" / "results.json").exists() and (tmp_path / "o" / "summary.json").exists()


def test_cli_bench_on_a_full_disk_leaves_the_old_results_and_no_temporary(tmp_path):
    """results.json is written whole or not at all (`personas.infra.files.write_whole`, through results.json.tmp)."""
    from evals.cli import app
    from tests.cli_fixtures import full_disk

    inter, cat = _write(tmp_path)
    out = tmp_path / "o"
    out.mkdir()
    (out / "results.json").write_text('{"old": true}')
    full_disk(out / "results.json.tmp")
    args = ["recsys", "bench", "--dataset", str(inter), "--catalog", str(cat), "--out", str(out), "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.output.strip() == f"error: {out / 'results.json'}: No space left on device"
    assert (out / "results.json").read_text() == '{"old": true}'
    assert [p.name for p in out.iterdir()] == ["results.json"]


def test_cli_bench_refuses_a_dataset_without_ratings(tmp_path):
    from evals.cli import app

    inter, cat = _write(tmp_path)
    pd.read_csv(inter).drop(columns="rating").to_csv(inter, index=False)
    args = ["recsys", "bench", "--dataset", str(inter), "--catalog", str(cat), "--out", str(tmp_path / "o"), "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "no rating column 'rating'" in result.output
    assert result.output.strip().count("\n") == 0


def test_tune_uses_validation_only_and_the_same_budget_for_every_variant(tmp_path):
    from evals.cli import app
    from recsys.tune import TuneConfig, trial_configs, tune

    inter, cat = _write(tmp_path)
    ds = load_interactions(inter, cat)
    cfg = TuneConfig(trials=2, max_epochs=3, mixture_ks=[2], pretrained=[2],
                     lams={k: [0.9, 0.5] for k in ("mmr", "dpp", "calibration", "mixture")})
    record = tune(ds, cfg)
    (tmp_path / "tune.json").write_text(json.dumps(record))
    assert record["trials"] == trial_configs(cfg) and len(record["trials"]) == 2
    for name in ("mf", "ampcf-k2", "ampcf-k2-mf"):  # same budget: every trial x every epoch, and the best of them is chosen
        v = record["variants"][name]
        assert len(v["curve"]) == 2 * 3
        best = max(v["curve"], key=lambda c: c["ndcg@10"])
        assert (v["val_ndcg@10"], v["epochs"]) == (best["ndcg@10"], best["epoch"])
    assert {len(v["grid"]) for v in record["lambdas"].values()} == {2}
    assert set(record["lambdas"]) == {"mf+mmr", "mf+dpp", "mf+calibration", "ampcf-k2+mixture", "ampcf-k2-mf+mixture"}
    with pytest.raises(ValueError, match="same number of lambdas"):
        TuneConfig(lams={"mmr": [0.5], "dpp": [0.5, 0.7], "calibration": [0.5], "mixture": [0.5]})
    cli = CliRunner().invoke(app, ["recsys", "bench", "--dataset", str(inter), "--catalog", str(cat), "--out",
                                   str(tmp_path / "b"), "--tuned", str(tmp_path / "tune.json"), "--quiet"])
    assert cli.exit_code == 0, cli.output
    assert json.loads((tmp_path / "b" / "results.json").read_text())[0]["variant"] == "pop"
    bad = CliRunner().invoke(app, ["recsys", "bench", "--dataset", str(inter), "--catalog", str(cat), "--out",
                                   str(tmp_path / "b2"), "--tuned", str(inter), "--quiet"])
    assert bad.exit_code == 2 and "not a tune.json" in bad.output


def test_tune_a_chosen_variant_started_from_the_tuned_mf(tmp_path):
    """--variants tunes only what it names, plus MF (the rerankers and every '-mf' variant start from it);
    a pre-trained variant gets the same trials x epochs as any other and its own persona-calibration lambda."""
    from evals.cli import app
    from recsys.tune import TuneConfig, tune

    inter, cat = _write(tmp_path)
    cfg = TuneConfig(trials=2, max_epochs=2, mixture_ks=[2], pretrained=[2], variants=["ampcf-k2-mf"],
                     lams={k: [0.9, 0.5] for k in ("mmr", "dpp", "calibration", "mixture")})
    record = tune(load_interactions(inter, cat), cfg)
    assert list(record["variants"]) == ["mf", "ampcf-k2-mf"]
    assert len(record["variants"]["ampcf-k2-mf"]["curve"]) == 2 * 2
    assert "ampcf-k2-mf+mixture" in record["lambdas"] and "ampcf-k2+mixture" not in record["lambdas"]
    assert set(record["tuned"]["ampcf-k2-mf"]) == {"lr", "reg", "batch_size", "epochs"}
    with pytest.raises(ValueError, match="unknown variant.*ampcf-k3-mf"):
        TuneConfig(variants=["ampcf-k3-mf"])
    out = tmp_path / "t"
    bad = CliRunner().invoke(app, ["recsys", "tune", "--dataset", str(inter), "--catalog", str(cat), "--out", str(out),
                                   "--variants", "ampcf-k2-mf,nope", "--quiet"])
    assert bad.exit_code == 2 and "unknown variant(s) to tune: nope" in bad.output
    assert bad.output.strip().count("\n") == 0 and not out.exists()
    bad = CliRunner().invoke(app, ["recsys", "bench", "--dataset", str(inter), "--catalog", str(cat), "--out", str(out),
                                   "--pretrained", "2,1", "--quiet"])
    assert bad.exit_code == 2 and "--pretrained: every K must be >= 2" in bad.output and not out.exists()


def test_cli_tune_writes_tune_json_whole(tmp_path):
    from evals.cli import app

    inter, cat = _write(tmp_path)
    out = tmp_path / "o"
    args = ["recsys", "tune", "--dataset", str(inter), "--catalog", str(cat), "--out", str(out), "--trials", "1",
            "--max-epochs", "1", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "tune.json").read_text())
    assert "mf" in record["variants"] and f"validation NDCG@10 {record['variants']['mf']['val_ndcg@10']:.4f}" in result.output
    assert [p.name for p in out.iterdir()] == ["tune.json"]  # no temporary left beside it


def test_bench_trains_each_variant_with_its_validation_tuned_settings():
    from recsys.bench import TUNED, make_model
    from recsys.offline import Variant, bench_variants

    cfg = BenchConfig(seed=7)
    cfg.train.seed = 7
    for name, tuned in TUNED.items():
        c = make_model(bench_variants()[name], cfg).config
        assert {k: getattr(c, k) for k in tuned} == tuned and c.seed == 7 and c.dim == 64
    untuned = make_model(Variant("ampcf", 3), cfg).config  # not tuned: the shared config with AMP-CF's own batch
    assert (untuned.epochs, untuned.batch_size) == (6, 256)


def test_cli_tune_refuses_a_validation_split_that_empties_a_user(tmp_path):
    from evals.cli import app

    inter, cat = _write(tmp_path)
    df = pd.read_csv(inter)
    short = pd.DataFrame({"user_id": [999, 999], "item_id": ["i0", "i1"], "rating": 5.0, "timestamp": [1.0, 2.0]})
    pd.concat([df, short]).to_csv(inter, index=False)  # two positives: one for test, one for validation, none left
    args = ["recsys", "tune", "--dataset", str(inter), "--catalog", str(cat), "--out", str(tmp_path / "o"), "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and result.output.strip().count("\n") == 0, result.output
    assert "leaves 1 user(s) with no training items (e.g. user '999')" in result.output
    assert not (tmp_path / "o" / "tune.json").exists()
    pd.read_csv(inter).drop(columns="rating").to_csv(inter, index=False)  # and without ratings, tune refuses too
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "no rating column 'rating'" in result.output


def test_bench_scores_a_plugin_and_a_library_model_as_its_own_rows(tmp_path):
    """`--models`: registry names (a plug-in, implicit's ALS) join the bench as rows like any other, with the
    paired CI against MF; a name nothing answers to is one line before any training."""
    inter, cat = _write(tmp_path)
    ds = load_interactions(inter, cat)
    plugin = "examples.plugins.genre_pop:make_ranker"
    cfg = BenchConfig(seed=3, mixture_ks=[2], pretrained=[], mmr=[0.5], dpp=[], calibration=[], mixture_cal=[],
                      candidates=20, ampcf_batch=128, train=TrainConfig(dim=8, epochs=2, batch_size=128),
                      models=["als", plugin])
    rows = {r["variant"]: r for r in run_bench(ds, tmp_path / "out", cfg, show_progress=False, write=write_whole)}
    assert {"als", plugin} <= set(rows) and rows[plugin]["model"] == plugin
    assert rows["als"]["ndcg@10"] > 0 and len(rows["als"]["ndcg@10_minus_mf_ci95"]) == 2
    res = CliRunner().invoke(__import__("evals.cli", fromlist=["app"]).app,
                             ["recsys", "bench", "--dataset", str(inter), "--catalog", str(cat), "--out",
                              str(tmp_path / "cli"), "--models", "als,nosuch_mod:f"])
    assert res.exit_code == 2 and "nosuch_mod" in res.output and not (tmp_path / "cli").exists()
