"""Write the packaged Instacart sample as RecBole atomic files: OUT/instacart.inter, .item, .user.

    python examples/atomic/write_instacart.py --out data/instacart
    personasim recsys bench --dataset data/instacart --out runs/instacart-bench

The data set is `recsys.data.load_instacart` with its defaults (the 5-core: 586 users, 2,555 products, 35,162
first purchases; timestamp = the purchase's rank in the user's history; each product's category its k-means
cluster, seed 0). A token_seq splits on spaces, so category "category 07" is written as "category_07".
"""

from __future__ import annotations

import argparse
from pathlib import Path

from personas.infra.assets import instacart_csv
from recsys.atomic import write_atomic
from recsys.data import load_instacart

NAME = "instacart"


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Folder for instacart.inter / .item / .user.")
    args = parser.parse_args(argv)
    ds = load_instacart(instacart_csv())
    ds.items["genres"] = [[g.replace(" ", "_") for g in gs] for gs in ds.items["genres"]]
    paths = write_atomic(ds, args.out, NAME)
    print(f"wrote {', '.join(str(p) for p in paths)}: {len(ds.ratings)} purchases of {ds.n_users} users, "
          f"{ds.n_items} products")
    return paths


if __name__ == "__main__":
    main()
