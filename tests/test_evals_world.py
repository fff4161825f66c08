"""The campaign's recommender adapter: a real AMP-CF behind the simulator's protocol."""

from __future__ import annotations

import numpy as np
import torch

from evals.world import RecsysAdapter
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
    assert all(it.meta["persona"] in (0, 1) for it in first)  # AMP-CF names the persona behind each item
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
