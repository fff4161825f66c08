"""Recommenders (Pop, MF, AMP-CF), post-hoc rerankers, metrics and the offline benchmark.

recsys imports nothing else of personasim: loaders take paths.
"""

from recsys.data import (DataError, Dataset, Split, TimeSplit, full_train, leave_last_out, load_instacart, load_interactions,
                         load_movielens, random_holdout, time_split, validation_split)
from recsys.factorised import AMPCF, MF
from recsys.models import Popularity, Recommender, RecsysError, TrainConfig, top_k
from recsys.pipeline import Reranker, slate

__all__ = [
    "AMPCF", "DataError", "Dataset", "MF", "Popularity", "Recommender", "RecsysError", "Reranker", "Split",
    "TimeSplit", "TrainConfig", "full_train", "leave_last_out", "load_instacart", "load_interactions", "load_movielens",
    "random_holdout", "slate", "time_split", "top_k", "validation_split",
]
