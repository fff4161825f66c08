"""Training with freed memory kept in the heap (`recsys.train_context.keep_freed_memory`) vs glibc's defaults.

AMP-CF K=8 with the bench's tuned config (batch 1024, full-catalog softmax) on ML-100k leave-last-out,
``--epochs`` epochs in each arm, one process, same seed: wall time, system CPU time and minor page
faults of each, their ratio, and whether the trained parameters are bit-identical (they must be).

    .venv/bin/python benchmarks/train_memory.py [--epochs 2] [--model ampcf-k8]
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import time
from dataclasses import replace

import torch

from personas.infra.assets import ml100k_dir
from recsys import factorised
from recsys.bench import BenchConfig, make_model
from recsys.offline import bench_variants
from recsys.data import leave_last_out, load_movielens


def train(name: str, epochs: int, train_matrix) -> tuple[dict, torch.Tensor]:
    model = make_model(bench_variants()[name], BenchConfig(seed=0))
    model.config = replace(model.config, epochs=epochs)
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    model.fit(train_matrix)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return ({"wall_s": time.perf_counter() - t0, "sys_s": r1.ru_stime - r0.ru_stime,
             "faults": r1.ru_minflt - r0.ru_minflt}, torch.cat([p.detach().flatten() for p in model.net.parameters()]))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--model", default="ampcf-k8", choices=sorted(set(bench_variants()) - {"pop"}))
    a = p.parse_args()
    split = leave_last_out(load_movielens(ml100k_dir()))
    kept = factorised.keep_freed_memory
    factorised.keep_freed_memory = contextlib.nullcontext  # glibc's defaults: big blocks mmap'd, unmapped on free
    default, w_default = train(a.model, a.epochs, split.train)
    factorised.keep_freed_memory = kept
    heap, w_heap = train(a.model, a.epochs, split.train)
    for name, r in (("glibc defaults", default), ("freed memory kept", heap)):
        print(f"{name}: {r['wall_s']:.1f} s wall, {r['sys_s']:.1f} s system CPU, {r['faults']:,} minor page faults")
    print(f"{a.model}, {a.epochs} epochs: wall ratio {default['wall_s'] / heap['wall_s']:.2f}x faster with the heap "
          f"kept; parameters bit-identical: {torch.equal(w_default, w_heap)}")


if __name__ == "__main__":
    main()
