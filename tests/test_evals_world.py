"""The campaign's recommender adapter: a real AMP-CF behind the simulator's protocol."""

from __future__ import annotations

import asyncio

import numpy as np
import torch

from evals.campaign.runner import plan_jobs
from evals.campaign.world import RecsysAdapter, user_seed
from recsys import AMPCF, TrainConfig
from simulator.catalog import Feedback, Item
from tests.recsys_fixtures import planted


class CountingAMPCF(AMPCF):
    """A real AMP-CF that counts its fold-ins."""

    folds = 0

    def fold_in(self, liked, steps=60, seed=0):
        self.folds += 1
        return super().fold_in(liked, steps=steps, seed=seed)


def test_adapter_refolds_once_per_slate_on_all_likes():
    torch.set_num_threads(1)
    train, _, item_cluster, genres = planted(n_clusters=4, items_per=15, n_users=60, per_user=12)
    model = CountingAMPCF(TrainConfig(dim=8, epochs=2, batch_size=128, loss="softmax", seed=0), k=2).fit(train)
    items = [Item(id=f"i{j}", title=f"movie {j}", facets={"genres": [f"g{c}"]}) for j, c in enumerate(item_cluster)]
    adapter = RecsysAdapter(model, None, items, np.asarray(train.sum(0)).ravel(), genres, seed=5)

    adapter.onboard(["i0", "i1"])
    first = adapter.recommend([], 4)
    assert model.folds == 1 and len(first) == 4
    assert all(it.meta["component"] in (0, 1) for it in first)  # AMP-CF names the component behind each item
    # two likes and a dislike in one turn: one refold, before the next slate, on every like so far
    feedback = [Feedback(item_id=first[0].id, turn=0, chosen=True), Feedback(item_id=first[1].id, turn=0, rating=5),
                Feedback(item_id=first[2].id, turn=0, rating=2)]
    for f in feedback:
        adapter.observe(f)
    assert model.folds == 1
    second = adapter.recommend(feedback, 4)
    assert model.folds == 2
    liked = [0, 1, int(first[0].id[1:]), int(first[1].id[1:])]
    np.testing.assert_array_equal(adapter.params, model.fold_in(np.asarray(liked), seed=5))
    assert not {it.id for it in second} & ({"i0", "i1"} | {it.id for it in first})  # never shown twice
    adapter.recommend(feedback, 4)  # nothing new liked: no refold
    assert model.folds == 3  # the two above plus the explicit fold_in in this test


def test_the_fold_in_seed_is_the_users_so_the_same_likes_give_the_same_slate_in_every_run():
    torch.set_num_threads(1)
    train, _, item_cluster, genres = planted(n_clusters=4, items_per=15, n_users=60, per_user=12)
    model = AMPCF(TrainConfig(dim=8, epochs=2, batch_size=128, loss="softmax", seed=0), k=2).fit(train)
    items = [Item(id=f"i{j}", title=f"movie {j}", facets={"genres": [f"g{c}"]}) for j, c in enumerate(item_cluster)]
    pop = np.asarray(train.sum(0)).ravel()
    jobs = plan_jobs(7, ["ampcf", "mf"], ["layered"], n_users=2, runs=2)
    run0, run1 = (next(j for j in jobs if j.user_index == 0 and j.run == r) for r in (0, 1))
    assert run0.seed != run1.seed and user_seed(7, run0, "fold-in") == user_seed(7, run1, "fold-in")
    other_user = next(j for j in jobs if j.user_index == 1 and j.run == 0)
    assert user_seed(7, other_user, "fold-in") != user_seed(7, run0, "fold-in")
    # the onboarding pool too: one per user, whatever the run or the recommender
    assert len({user_seed(7, j, "pool") for j in jobs if j.user_index == 0}) == 1
    assert user_seed(7, run0, "pool") != user_seed(7, run0, "fold-in")

    def first_slate(seed):
        adapter = RecsysAdapter(model, None, items, pop, genres, seed=seed)
        adapter.onboard(["i0", "i17"])
        return [it.id for it in adapter.recommend([], 6)], adapter.params

    (a, pa), (b, pb) = first_slate(user_seed(7, run0, "fold-in")), first_slate(user_seed(7, run1, "fold-in"))
    assert a == b and np.array_equal(pa, pb)
    _, pc = first_slate(run1.seed)  # a per-run seed would start each run's fold-in elsewhere
    assert not np.array_equal(pa, pc)


def _sessions(model, items, pop, genres, folder, n_users=6, turns=3):
    """Play ``n_users`` concurrent sessions the way `run_session` drives a recommender: onboard, then
    per turn ``prepare`` (awaited), ``recommend``, and feedback; returns each user's slates and params."""
    from evals.campaign.world import RecsysAdapter

    async def one(u):
        adapter = RecsysAdapter(model, None, items, pop, genres, seed=100 + u, folder=folder, model_name="m")
        adapter.onboard([f"i{u}", f"i{u + 17}"])
        slates, params = [], []
        for t in range(turns):
            await adapter.prepare()
            slate = adapter.recommend([], 4)
            slates.append([it.id for it in slate])
            params.append(adapter.params)
            for j, it in enumerate(slate):  # the user likes the first item of each slate
                adapter.observe(Feedback(item_id=it.id, turn=t, chosen=j == 0))
            await asyncio.sleep(0)
        return slates, params

    async def all_users():
        return await asyncio.gather(*(one(u) for u in range(n_users)))

    return asyncio.run(all_users())


def _fixture():
    train, _, item_cluster, genres = planted(n_clusters=4, items_per=15, n_users=60, per_user=12)
    model = AMPCF(TrainConfig(dim=8, epochs=2, batch_size=128, loss="softmax", seed=0), k=2).fit(train)
    items = [Item(id=f"i{j}", title=f"movie {j}", facets={"genres": [f"g{c}"]}) for j, c in enumerate(item_cluster)]
    return model, items, np.asarray(train.sum(0)).ravel(), genres


def _same(a, b):
    return all(sa == sb and all(np.array_equal(x, y) for x, y in zip(pa, pb)) for (sa, pa), (sb, pb) in zip(a, b))


def test_batched_fold_in_off_the_loop_gives_the_slates_of_inline_fold_ins(tmp_path):
    """Sessions waiting on the same model are folded in together in a worker thread (and in a worker
    process); every session still gets exactly the parameters and slates of one inline fold-in each."""
    from evals.campaign.foldin import FoldInBatcher, FoldInSettings

    torch.set_num_threads(1)
    model, items, pop, genres = _fixture()
    model.save(tmp_path / "m.pt")
    without = _sessions(model, items, pop, genres, folder=None)  # recommend refolds on the loop, as before
    inline = FoldInBatcher({"m": model}, FoldInSettings(executor="inline"))
    reference = _sessions(model, items, pop, genres, inline)
    assert _same(reference, without) and inline.largest_batch == 1
    for kind in ("thread", "process"):
        folder = FoldInBatcher({"m": model}, FoldInSettings(executor=kind), {"m": str(tmp_path / "m.pt")})
        try:
            got = _sessions(model, items, pop, genres, folder)
        finally:
            folder.close()
        assert _same(got, reference), kind
        assert folder.folds == inline.folds and folder.largest_batch > 1, (kind, folder.largest_batch)


def test_warm_start_is_an_option_that_changes_refolds_only():
    from evals.campaign.foldin import FoldInBatcher, FoldInSettings

    torch.set_num_threads(1)
    model, items, pop, genres = _fixture()
    cold = _sessions(model, items, pop, genres, FoldInBatcher({"m": model}, FoldInSettings(executor="inline")))
    warm_folder = FoldInBatcher({"m": model}, FoldInSettings(executor="thread", warm_steps=15))
    try:
        warm = _sessions(model, items, pop, genres, warm_folder)
    finally:
        warm_folder.close()
    for (cs, cp), (ws, wp) in zip(cold, warm):
        assert cs[0] == ws[0] and np.array_equal(cp[0], wp[0])  # a session's first fold is always cold
        assert not np.array_equal(cp[1], wp[1])  # a refold continues from the previous parameters


def test_a_campaigns_ampcf_mf_starts_from_the_campaigns_own_mf():
    """'ampcf-mf' pre-trains an MF exactly as the campaign trains its 'mf' (same config, same seed), so with no
    AMP-CF epoch and no noise it scores as the campaign's MF; with its epochs it is an AMP-CF of its own. Its K
    is the settings' field, not parsed from a name."""
    from dataclasses import replace

    from recsys.offline import DEFAULT_TRAIN
    from recsys.registry import AMPCF_BATCH, Settings, build, train

    train_matrix = planted(major=0.7)[0]
    tc = replace(DEFAULT_TRAIN, dim=8, epochs=3, seed=5)
    settings = Settings(tc, mixture_k=2, seed=5)
    users = np.arange(30)
    mf = train("mf", settings, train_matrix)
    # as `prepare` builds it, with no AMP-CF epoch and no noise
    untrained = build("ampcf-mf", settings)
    untrained.config, untrained.pretrain_noise = replace(untrained.config, epochs=0), 0.0
    np.testing.assert_allclose(untrained.fit(train_matrix).score_all(users), mf.score_all(users), rtol=1e-5, atol=1e-5)
    trained = train("ampcf-mf", settings, train_matrix)
    assert trained.pretrain == tc and trained.k == 2 and trained.config.batch_size == AMPCF_BATCH
    assert not np.allclose(trained.score_all(users), mf.score_all(users), atol=1e-3)
    # `prepare` hands it the campaign's MF when it trained one: the same model as pre-training its own
    reused = train("ampcf-mf", settings, train_matrix, start=mf)
    np.testing.assert_array_equal(reused.score_all(users), trained.score_all(users))
    assert build("ampcf", replace(settings, mixture_k=3)).k == 3


def test_twins_are_drawn_at_random_among_members_and_a_persona_too_small_is_refused():
    import pytest

    from evals.campaign.world import draw_twins

    members = {"p0": [f"u{i}" for i in range(50)], "p1": [f"v{i}" for i in range(30)]}
    drawn = draw_twins(members, 4, seed=0, has_memory=lambda d: d != "u3")
    assert {p: len(d) for p, d in drawn.items()} == {"p0": 4, "p1": 4}
    assert all(len(set(d)) == 4 and set(d) <= set(members[p]) for p, d in drawn.items())
    assert "u3" not in drawn["p0"]  # a member without training ratings is never a twin
    assert drawn == draw_twins(members, 4, seed=0, has_memory=lambda d: d != "u3")  # seeded
    assert draw_twins(members, 4, seed=1, has_memory=bool) != drawn
    # not the most central members (the list's head): over seeds, the draws cover the whole list
    heads = [draw_twins(members, 4, seed=s, has_memory=bool)["p0"] for s in range(20)]
    assert len({d for h in heads for d in h}) > 30
    with pytest.raises(ValueError, match="users_per_persona: 31 grounded users a persona, but persona 'p1' has 30 "
                                         "members with training ratings"):
        draw_twins(members, 31, seed=0, has_memory=bool)
