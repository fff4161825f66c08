"""A worked plug-in: popularity within the categories (genres) a user likes.

    personasim recsys check examples.plugins.genre_pop:make_ranker      # the contract suite + bench scores
    variants: [mf, "examples.plugins.genre_pop:make_ranker"]              # one line in a campaign config

It keeps the contract in recsys/contract.py without importing personasim: fit, score_all, fold_in,
score_params, and the optional set_catalog (it asks for the items' categories).
"""

import numpy as np


class GenrePopularity:
    def __init__(self, smoothing: float = 1.0):
        self.smoothing = smoothing
        self.categories = None  # [N, G] multi-hot, from set_catalog

    def set_catalog(self, item_ids, categories):
        names = sorted({c for cs in categories for c in cs})
        self.categories = np.zeros((len(item_ids), max(len(names), 1)))
        for i, cs in enumerate(categories):
            self.categories[i, [names.index(c) for c in cs]] = 1.0

    def fit(self, train):
        self.train, self.popularity = train.tocsr(), np.asarray(train.sum(axis=0)).ravel()
        if self.categories is None:  # no catalog: every item in one category, i.e. plain popularity
            self.categories = np.ones((train.shape[1], 1))
        return self

    def _scores(self, liked):
        taste = self.categories[liked].sum(axis=0) + self.smoothing  # the user's likes per category, smoothed
        share = self.categories @ (taste / taste.sum()) / np.maximum(self.categories.sum(axis=1), 1)
        return share * self.popularity

    def score_all(self, users):
        return np.stack([self._scores(self.train[u].indices) for u in users])

    def fold_in(self, liked, steps=60, seed=0):
        return np.asarray(liked)  # a new user is their likes

    def score_params(self, liked):
        return self._scores(liked)


def make_ranker(seed: int = 0):
    """Popularity within the user's liked categories."""
    return GenrePopularity()
