"""Recommenders (Pop, MF, AMP-CF, the library models), post-hoc rerankers, metrics and the offline benchmark.

recsys imports nothing else of personasim: loaders take paths. The names below load on first use, so that a
config check that only needs `recsys.registry` does not import torch.
"""

from importlib import import_module

_HOME = {
    **dict.fromkeys(("DataError", "Dataset", "Split", "full_train", "leave_last_out", "load_instacart",
                     "load_interactions", "load_movielens", "random_holdout", "validation_split"), "recsys.data"),
    **dict.fromkeys(("TimeSplit", "global_split", "make_split", "time_split"), "recsys.time_splits"),
    **dict.fromkeys(("AMPCF", "MF"), "recsys.factorised"),
    **dict.fromkeys(("load_atomic", "write_atomic"), "recsys.atomic"),
    **dict.fromkeys(("Popularity", "Recommender", "RecsysError", "TrainConfig", "top_k"), "recsys.models"),
    **dict.fromkeys(("Reranker", "slate"), "recsys.pipeline"),
}

__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'recsys' has no attribute {name!r}")
    value = getattr(import_module(_HOME[name]), name)
    globals()[name] = value
    return value
