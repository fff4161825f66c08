"""The llama.cpp build behind the `embedded` backend: what it was compiled for, and whether it runs here.

The set-up (`make setup`) compiles llama-cpp-python for one fixed instruction set, x86-64 with
AVX2 + FMA + F16C + BMI2 (`REQUIRED_FLAGS`), never for the CPU that happens to run the set-up:
llama.cpp's default native build takes the AMX matmul path on Intel CPUs that have it and
segfaults there at the first token, and a native build rounds differently on every CPU family.

A crash in native code kills the process that hosts it, so it cannot be caught as an exception.
`probe` therefore runs one real generation and one log-prob read in a child process
(``python -m simulator.llm.backends.llama_build MODEL``) before the model is loaded in-process:
a crash becomes an `LLMConfigError` of one line that names the library, the instruction set it
was built for, what this CPU has, and the fix.

A check that passed is remembered on disk (`remembered`, under ~/.cache/personasim/checks/): the GGUF
read for that file (its path, size and modification time), the probe for that file with that library
file, thread count, CPU and Python. Reading a 135M model's GGUF metadata takes ~5 s and the probe's
child ~2 s; a CLI call that runs them every time spends its seconds there, not in its work. A failure
is never remembered, and a changed model, library or CPU is a new key, so nothing stale passes.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

from simulator.llm.errors import LLMConfigError

#: CPU features the portable build is compiled for (x86-64; /proc/cpuinfo names).
REQUIRED_FLAGS = ("avx2", "fma", "f16c", "bmi2")
#: llama.cpp threads when a config names none: a fixed count, not the machine's core count, so the
#: same work runs the same way everywhere (llama.cpp's results do not depend on it; its speed does).
DEFAULT_THREADS = 2
#: The command that rebuilds the portable wheel.
REBUILD = "rm -rf \"$(make -s llama-wheels-dir)\" .venv && make setup"
#: Seconds the child may take to load the model and answer.
PROBE_TIMEOUT_S = 180.0


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str] | None:
    """The CPU's feature flags as the kernel names them, or None where that cannot be read (not Linux)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return None


def check_cpu(flags: set[str] | None = None, machine: str | None = None) -> None:
    """LLMConfigError naming what is missing when this x86-64 CPU lacks a feature the build needs."""
    machine = machine or platform.machine()
    flags = cpu_flags() if flags is None else flags
    if machine not in ("x86_64", "AMD64") or flags is None:
        return  # other architectures build with GGML_NATIVE=OFF and their own baseline
    missing = [f for f in REQUIRED_FLAGS if f not in flags]
    if missing:
        raise LLMConfigError(f"this CPU lacks {' '.join(missing)}, which the portable llama.cpp build "
                             f"(x86-64 {'+'.join(f.upper() for f in REQUIRED_FLAGS)}) needs; "
                             "build for this CPU with: make setup LLAMA_ISA=native")


def checks_dir() -> Path:
    """Where passed checks are remembered: $XDG_CACHE_HOME/personasim/checks (default ~/.cache/...)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "personasim" / "checks"


def file_identity(path: str | Path) -> str:
    """'resolved path|size|mtime_ns': a file changed in place is another file here."""
    path = Path(path).resolve()
    st = path.stat()
    return f"{path}|{st.st_size}|{st.st_mtime_ns}"


def remembered(kind: str, key: str, compute):
    """The JSON-able result of a passed check ``kind`` for ``key``: read from `checks_dir` when it is there,
    else ``compute()`` (which raises on a failure, never remembered), written, and returned."""
    import hashlib

    path = checks_dir() / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"
    try:
        record = json.loads(path.read_text())
        if record.get("key") == key:
            return record["result"]
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    result = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "result": result}))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs the check again next time
    return result


def check_gguf(path: str | Path) -> None:
    """LLMConfigError unless ``path`` is a whole GGUF file: the magic bytes, then every tensor's data
    inside the file (a truncated download fails here, in one line, not inside llama.cpp). The tensor
    read is remembered per file (`remembered`)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise LLMConfigError(f"model file {path}: cannot be read ({exc.strerror or exc})") from None
    if magic != b"GGUF":
        raise LLMConfigError(f"model file {path}: not a GGUF file (it starts with {magic!r}, not b'GGUF')")
    remembered("gguf", file_identity(path), lambda: _check_tensors(path))


def _check_tensors(path: Path) -> bool:
    import gguf

    try:
        reader = gguf.GGUFReader(path)
        end = max((t.data_offset + t.n_bytes for t in reader.tensors), default=0)
    except Exception as exc:  # gguf raises ValueError, IndexError, struct errors... on a damaged file
        raise LLMConfigError(f"model file {path}: a damaged or truncated GGUF file "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'unreadable'})") from None
    size = path.stat().st_size
    if end > size:
        raise LLMConfigError(f"model file {path}: truncated GGUF file ({size} bytes, its tensors need {end})")
    return True


def parse_system_info(info: str) -> dict[str, str]:
    """``llama_print_system_info()`` ("CPU : SSE3 = 1 | AVX2 = 1 | ... |") as {feature: value}."""
    out = {}
    for part in info.replace(";", "|").split("|"):
        name, sep, value = part.rpartition("=")
        if sep:
            out[name.split(":")[-1].strip()] = value.strip()
    return out


def build_features() -> list[str]:
    """The instruction-set features the installed llama.cpp was compiled with, e.g. ['AVX', 'AVX2', 'FMA', ...]."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")
    skip = {"LLAMAFILE", "OPENMP", "REPACK", "KLEIDIAI"}  # build options, not instruction sets
    return sorted(k for k, v in parse_system_info(info).items() if v == "1" and k not in skip)


def library_file() -> Path:
    """The compiled llama.cpp CPU library that llama-cpp-python loads."""
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    root = Path(spec.origin).parent / "lib"
    hits = sorted(root.glob("libggml-cpu*")) or sorted(root.glob("libllama*"))
    return hits[0] if hits else root


def _describe_crash(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"crashed with {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


@lru_cache(maxsize=None)
def probe(model_path: str, n_threads: int = DEFAULT_THREADS) -> dict:
    """Run one generation and one log-prob read of ``model_path`` in a child process.

    Returns the child's report ({'text', 'tokens', 'top_logprob', 'features', 'seconds'}); raises
    LLMConfigError of one line when the child crashes, hangs or fails. Remembered per process, and on disk
    per model file, library file, thread count, CPU and Python (`remembered`).
    """
    check_cpu()
    check_gguf(model_path)
    key = "|".join([file_identity(model_path), file_identity(library_file()), str(n_threads),
                    " ".join(sorted(cpu_flags() or ())), sys.executable, platform.machine()])
    return remembered("probe", key, lambda: run_child(
        [sys.executable, "-m", "simulator.llm.backends.llama_build", str(model_path), str(n_threads)], model_path))


def run_child(cmd: list[str], model_path: str) -> dict:
    """Run the probe's child ``cmd``; its last stdout line as JSON, or LLMConfigError of one line."""
    env = {**os.environ, "PYTHONFAULTHANDLER": ""}  # the child's one-line failure, not a Python stack dump
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        raise LLMConfigError(f"llama-cpp-python did not answer a 4-token test generation with {model_path} "
                             f"in {PROBE_TIMEOUT_S:.0f} s") from None
    if done.returncode == 0:
        try:
            return json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise LLMConfigError(f"llama-cpp-python's test generation printed no report: {done.stdout[-200:]!r}") from None
    built = _child_features()
    have = sorted(f.upper() for f in (cpu_flags() or set()) if f.startswith(("avx", "amx", "fma", "f16c", "bmi")))
    last = (done.stderr.strip().splitlines() or [""])[-1][:200]
    raise LLMConfigError(
        f"llama-cpp-python ({library_file()}) {_describe_crash(done.returncode)} in a test generation with "
        f"{Path(model_path).name}; it was built for {built}; this CPU has {' '.join(have) or 'unknown features'}"
        f"{'; ' + last if last else ''}; rebuild the portable wheel: {REBUILD}")


def _child_features() -> str:
    """The build's features, read in another child (the library may crash even there)."""
    code = "from simulator.llm.backends.llama_build import build_features as f; print(' '.join(f()))"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "unknown features"
    return done.stdout.strip() or "unknown features"


def _child(model_path: str, n_threads: int) -> None:
    """The probe's child: load, generate 4 tokens greedily, read the next token's log-probabilities."""
    import llama_cpp
    import numpy as np

    t0 = time.perf_counter()
    llm = llama_cpp.Llama(model_path=model_path, n_ctx=256, n_threads=n_threads, seed=0, verbose=False)
    out = llm.create_completion("The capital of France is", max_tokens=4, temperature=0.0)
    tokens = llm.tokenize(b"Is this film good? Answer yes or no:")
    llm.reset()
    llm.eval(tokens)
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
    top = float(np.max(llama_cpp.Llama.logits_to_logprobs(logits)))
    if not np.isfinite(top):
        raise SystemExit("llama.cpp returned non-finite log-probabilities")
    print(json.dumps({"text": out["choices"][0]["text"], "tokens": out["usage"]["completion_tokens"],
                      "top_logprob": top, "features": build_features(),
                      "seconds": round(time.perf_counter() - t0, 3)}))


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_THREADS)
