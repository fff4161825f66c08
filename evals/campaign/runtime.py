"""The CPU kernels a campaign computes with, pinned so that the same config and seed give the same turns
on every x86-64 CPU with AVX2, and a record of what actually ran.

Numeric libraries pick their kernels per CPU at run time: torch's own vectorised kernels (AVX2 or
AVX-512), MKL's and oneDNN's code paths, OpenBLAS's per-microarchitecture kernels. Each rounds in its
own way, so MF and AMP-CF, trained with torch, came out different on two machines. `pin_kernels` sets
each library's documented switch to the AVX2 path and fixes the thread counts (a reduction split over
another number of threads adds in another order). llama.cpp is pinned at build time instead (the
Makefile's LLAMA_ISA, `simulator.llm.backends.llama_build`).

Each switch is read once, when its library starts, so `pin_kernels` runs before numpy or torch is
imported: first thing in the CLI (`evals.cli`) and in the tests' conftest. A value already in the
environment is kept (a user who sets OMP_NUM_THREADS=16 gets 16), and `kernel_report` records what
ran, so a report can say when its run was not on the pinned path. This module imports nothing heavy.
"""

from __future__ import annotations

import os
import platform

#: Threads for every numeric library: the documented 2-core machine's count, on any machine.
THREADS = 2
#: Environment switches, each the library's own documented one, set where not already set.
PINNED_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",      # torch's vectorised CPU kernels: AVX2, not AVX-512, on every CPU
    "MKL_CBWR": "AVX2,STRICT",          # MKL's conditional numerical reproducibility on its AVX2 path
    "ONEDNN_MAX_CPU_ISA": "AVX2",       # oneDNN (torch's mkldnn ops) no further than AVX2
    "OPENBLAS_CORETYPE": "Haswell",     # numpy's/scipy's OpenBLAS: its AVX2 (Haswell) kernels
    "OMP_NUM_THREADS": str(THREADS),    # torch's intra-op threads (and OpenMP's default)
    "MKL_NUM_THREADS": str(THREADS),
    "OPENBLAS_NUM_THREADS": str(THREADS),
}


def pin_kernels(environ: dict | None = None) -> dict[str, str]:
    """Set each of PINNED_ENV that is not set already; return the ones this call set."""
    env = os.environ if environ is None else environ
    added = {k: v for k, v in PINNED_ENV.items() if k not in env}
    env.update(added)
    return added


def unpinned() -> dict[str, str]:
    """The switches whose value in this process's environment differs from the pinned one."""
    return {k: os.environ.get(k, "(unset)") for k, v in PINNED_ENV.items() if os.environ.get(k) != v}


def cpu_model() -> str:
    """The CPU's model name (Linux), else what platform reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def kernel_report() -> dict:
    """What this process computes with: the CPU, torch's kernel capability and threads, llama.cpp's build
    features, and any switch not on its pinned value. Imports torch and llama_cpp (call it at run time)."""
    import torch

    report = {"cpu": cpu_model(), "machine": platform.machine(),
              "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "torch_threads": torch.get_num_threads(), "unpinned": unpinned()}
    try:
        from simulator.llm.backends.llama_build import build_features

        report["llama_build"] = build_features()
    except ImportError:
        report["llama_build"] = None
    return report


def describe(report: dict | None) -> str:
    """One line for a report header, e.g. 'llama.cpp AVX AVX2 F16C FMA · torch AVX2 × 2 threads · AMD EPYC'."""
    if not report:
        return "not recorded"
    llama = " ".join(report.get("llama_build") or []) or "n/a"
    line = (f"llama.cpp built for {llama} · torch {report.get('torch_cpu_capability')} × "
            f"{report.get('torch_threads')} threads · {report.get('cpu')}")
    if report.get("unpinned"):
        line += " · NOT PINNED: " + ", ".join(f"{k}={v}" for k, v in sorted(report["unpinned"].items()))
    return line
