"""Tokens/s of the portable llama.cpp build (x86-64 AVX2 + FMA + F16C + BMI2) against a native build of the
same version, both built and run in one session on one machine, as a ratio.

    .venv/bin/python benchmarks/llama_portable.py [--rounds 3] [--tokens 128]

Builds the native wheel once with `make llama-wheel LLAMA_ISA=native` (about 6 min on 2 cores; kept in
the folder `make llama-wheels-dir LLAMA_ISA=native` names), unpacks both wheels side by side, and runs the same greedy generations in a
child process per build, alternating portable and native each round so that a busy neighbour slows both.
Prints each round's tokens/s, the median ratio portable / native, and whether the two builds wrote the
same tokens (they need not: a native build may round differently). A build that crashes on this CPU is
reported as such (exit code and signal), which is the reason the set-up does not build native.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from simulator.llm.backends.llama_build import DEFAULT_THREADS

ROOT = Path(__file__).resolve().parents[1]
VERSION = "0.3.36"
PROMPTS = ["Write a short review of a science fiction film you liked.",
           "Describe your favourite comedy in two sentences.",
           "Which three films would you take to a desert island, and why?"]

CHILD = r"""
import json, sys, time
import llama_cpp
model, n_threads, tokens, prompts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
llm = llama_cpp.Llama(model_path=model, n_ctx=1024, n_threads=n_threads, seed=0, verbose=False)
llm.create_completion("warm up", max_tokens=4, temperature=0.0)
out, n, t0 = [], 0, time.perf_counter()
for p in prompts:
    r = llm.create_completion(p, max_tokens=tokens, temperature=0.0)
    out.append(r["choices"][0]["text"]); n += r["usage"]["completion_tokens"]
secs = time.perf_counter() - t0
print(json.dumps({"tok_s": n / secs, "tokens": n, "texts": out,
                  "info": llama_cpp.llama_print_system_info().decode()}))
"""


def wheel(isa: str) -> Path:
    folder = Path(subprocess.run(["make", "-s", "--no-print-directory", "llama-wheels-dir", f"LLAMA_ISA={isa}"],
                                 cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip())
    found = sorted(folder.glob(f"llama_cpp_python-{VERSION}-*.whl"))
    if not found:
        subprocess.run(["make", "--no-print-directory", "llama-wheel", f"LLAMA_ISA={isa}"], cwd=ROOT, check=True)
        found = sorted(folder.glob(f"llama_cpp_python-{VERSION}-*.whl"))
    return found[0]


def run(site: Path, model: str, threads: int, tokens: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, model, str(threads), str(tokens), json.dumps(PROMPTS)],
                          capture_output=True, text=True, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    if done.returncode != 0:
        return {"failed": f"exit {done.returncode}: {(done.stderr.strip().splitlines() or [''])[-1][:200]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=128, help="new tokens per prompt")
    ap.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    a = ap.parse_args()
    from personas.infra.assets import smollm2_gguf

    model = str(smollm2_gguf())
    with tempfile.TemporaryDirectory() as tmp:
        sites = {}
        for isa in ("avx2", "native"):
            sites[isa] = Path(tmp) / isa
            with zipfile.ZipFile(wheel(isa)) as zf:
                zf.extractall(sites[isa])
        rows = []
        for r in range(a.rounds):
            row = {isa: run(sites[isa], model, a.threads, a.tokens) for isa in ("avx2", "native")}
            rows.append(row)
            print(f"round {r + 1}: " + "  ".join(
                f"{isa} {row[isa]['tok_s']:.1f} tok/s" if "tok_s" in row[isa] else f"{isa} {row[isa]['failed']}"
                for isa in row), flush=True)
    for isa in ("avx2", "native"):
        info = next((row[isa]["info"] for row in rows if "info" in row[isa]), "did not run")
        print(f"{isa} build: {info.strip()}")
    ratios = [row["avx2"]["tok_s"] / row["native"]["tok_s"] for row in rows
              if "tok_s" in row["avx2"] and "tok_s" in row["native"]]
    if ratios:
        same = all(row["avx2"]["texts"] == row["native"]["texts"] for row in rows if "texts" in row["native"])
        print(f"portable / native tokens/s: median {statistics.median(ratios):.3f} "
              f"(rounds: {', '.join(f'{x:.3f}' for x in ratios)}); same tokens: {same}")
    else:
        print("no ratio: a build did not run here (see its exit code above)")


if __name__ == "__main__":
    main()
