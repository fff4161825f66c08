"""How long the map takes, against its 30-minute target, and the single-seed bench against its 3-minute one.

Runs `recsys.map.run_map` with the default map config (or --config) and ML-100k
placed on it, then (with --bench) `recsys.bench.run_bench --seed 0` on ML-100k,
in the same process, and prints each wall time, its ratio to the target, and
the map's CPU seconds. The map runs ``--workers`` processes with one PyTorch
thread each (two threads per process on two shared cores were 5-10x slower).

    nice -n 15 .venv/bin/python benchmarks/recsys_map.py --out runs/recsys_map [--config map.yaml] [--bench]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from personas.infra.assets import ml100k_dir
from personas.infra.files import write_whole
from recsys import load_movielens
from recsys.map import read_map_config, run_map


MAP_TARGET_S = 30 * 60
BENCH_TARGET_S = 3 * 60


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--config", type=Path, default=None)
    p.add_argument("--workers", type=int, default=2, help="map processes, one PyTorch thread each")
    p.add_argument("--threads", type=int, default=2, help="PyTorch threads of the bench (--bench)")
    p.add_argument("--bench", action="store_true", help="also time `recsys bench --seed 0` on ML-100k")
    a = p.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    mc = read_map_config(a.config)
    ds = load_movielens(ml100k_dir())
    t0 = time.perf_counter()
    record = run_map(mc, a.out, {"ml-100k": ds}, show_progress=False, workers=a.workers, write=write_whole)
    map_s, map_cpu = time.perf_counter() - t0, record["cpu_s"]  # the workers' CPU seconds and this process's
    n = len(record["cells"]) * mc.seeds
    # CPU seconds as well as wall: on shared cores the wall time says more about the neighbours than about the map
    figures = {"map_s": map_s, "map_cpu_s": map_cpu, "map_over_target": map_s / MAP_TARGET_S, "cell_seeds": n,
               "workers": a.workers,
               "bench_threads": a.threads, "load_avg_at_end": list(os.getloadavg())}
    print(record["answer"])
    print(f"map: {len(record['cells'])} cells x {mc.seeds} seeds + ML-100k x {mc.place_seeds}: {map_s:.0f} s "
          f"= {figures['map_over_target']:.2f} x the 30-min target ({map_cpu:.0f} CPU s)")
    if a.bench:
        from recsys.bench import BenchConfig, run_bench

        t0 = time.perf_counter()
        run_bench(ds, a.out / "bench-seed0", BenchConfig(seed=0), show_progress=False, write=write_whole)
        bench_s = time.perf_counter() - t0
        figures.update(bench_s=bench_s, bench_over_target=bench_s / BENCH_TARGET_S, map_over_bench=map_s / bench_s)
        print(f"bench --seed 0: {bench_s:.0f} s = {figures['bench_over_target']:.2f} x the 3-min target; "
              f"map / bench = {figures['map_over_bench']:.1f}")
    write_whole(a.out / "timing.json", json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
