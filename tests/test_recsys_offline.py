"""One API builds and trains recommenders by name for the offline bench and for campaigns."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from recsys import AMPCF, MF, Popularity, RecsysError, TrainConfig
from recsys.bench import BenchConfig, make_model
from recsys.offline import AMPCF_BATCH, Variant, campaign_train_config, make_recommender, train_recommender
from tests.recsys_fixtures import planted

ROOT = Path(__file__).resolve().parents[1]
TC = TrainConfig(dim=8, epochs=2, lr=1e-2, reg=1e-3, batch_size=512, loss="softmax", seed=4)


def test_names_build_the_models_the_bench_builds():
    cfg = BenchConfig(seed=4, train=TC)
    assert isinstance(make_recommender(Variant("pop"), TC), Popularity)
    for variant in (Variant("mf"), Variant("ampcf", 2), Variant("ampcf", 4)):
        ours, bench = make_recommender(variant, make_model(variant, cfg).config), make_model(variant, cfg)
        assert type(ours) is type(bench) and ours.config == bench.config
        assert (ours.k, ours.tau, ours.att_dim, ours.peak_reg, ours.spread_reg) == \
               (bench.k, bench.tau, bench.att_dim, bench.peak_reg, bench.spread_reg)
    assert [Variant("mf").label, Variant("ampcf", 4).label, Variant("ampcf", 2, from_mf=True).label] == \
        ["mf", "ampcf-k4", "ampcf-k2-mf"]  # labels are made from the fields
    for bad, message in ((dict(kind="ampcf-k2"), "unknown model kind 'ampcf-k2'"),
                         (dict(kind="mf", k=2), "'mf' has no mixture components"),
                         (dict(kind="ampcf", k=1, from_mf=True), "needs k >= 2")):
        with pytest.raises(RecsysError, match=message):
            Variant(**bad)


def test_a_campaign_model_trains_bit_identically_to_the_bench_helper():
    """evals.campaign.world and evals.validity.fidelity train 'ampcf' through recsys.offline: the same parameters as an AMP-CF
    built with the bench's settings, and the campaign's AMP-CF batch size is the bench's."""
    torch.set_num_threads(1)
    train = planted(n_users=80)[0]
    amp = Variant("ampcf", 2)
    assert campaign_train_config(amp, TC).batch_size == AMPCF_BATCH and campaign_train_config(Variant("mf"), TC) == TC
    ours = train_recommender(amp, train, campaign_train_config(amp, TC))
    cfg = BenchConfig(seed=4)
    bench = AMPCF(replace(TC, batch_size=cfg.ampcf_batch), k=2, tau=cfg.tau, att_dim=cfg.att_dim,
                  peak_reg=cfg.peak_reg, spread_reg=cfg.spread_reg).fit(train)
    assert isinstance(ours, AMPCF) and torch.equal(ours.net.users, bench.net.users)
    assert torch.equal(ours.net.items, bench.net.items) and torch.equal(ours.net.W, bench.net.W)
    mf = train_recommender(Variant("mf"), train, TC)
    assert isinstance(mf, MF) and torch.equal(mf.net.items, MF(replace(TC)).fit(train).net.items)


def test_campaigns_build_models_without_the_benchmark_module():
    tree = ast.parse((ROOT / "evals" / "campaign" / "world.py").read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "recsys.offline" in modules and "recsys.bench" not in modules


def _split_of(train):
    """A leave-last-out-like split of a planted train matrix: each user's last train item held out."""
    import numpy as np

    from recsys.data import Split

    rows = [train.indices[train.indptr[u]:train.indptr[u + 1]] for u in range(train.shape[0])]
    users = np.array([u for u, r in enumerate(rows) if len(r) >= 2])
    test = np.array([rows[u][-1] for u in users])
    kept = train.tolil(copy=True)
    for u, i in zip(users, test):
        kept[u, i] = 0
    return Split(kept.tocsr(), users, test, train.shape[0], train.shape[1])


def test_every_list_metric_keeps_the_contract_and_a_new_one_is_one_line():
    import math

    from recsys import offline

    train, _, _, genres = planted(n_users=60)
    split = _split_of(train)
    model = Popularity().fit(split.train)
    row = offline.evaluate("pop", model, split, genres, 10)
    assert list(offline.LIST_METRICS) == [c for c in row if c in offline.LIST_METRICS]  # every entry, in order
    for col in offline.LIST_METRICS:
        v = row[col]
        assert isinstance(v, float) and (math.isnan(v) or v >= 0.0), (col, v)
    assert 0.0 <= row["recall@10"] <= 1.0 and 0.0 <= row["coverage@10"] <= 1.0
    no_genres = offline.evaluate("pop", model, split, genres[:, :0], 10)
    assert math.isnan(no_genres["calibration_kl@10"]) and math.isnan(no_genres["ild@10"])  # pop has no embeddings
    offline.LIST_METRICS["hits@10"] = offline.ListMetric("hits@10", lambda ls: float((ls.recs == ls.test_items[:, None])
                                                                                     .any(1).sum()), summarised=False)
    try:
        assert offline.evaluate("pop", model, split, genres, 10)["hits@10"] == pytest.approx(row["recall@10"] * len(split.test_users))
    finally:
        del offline.LIST_METRICS["hits@10"]
