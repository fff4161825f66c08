"""The context a factorised model trains in: PyTorch's deterministic kernels (the same seed gives the
same model) and, on glibc, freed memory kept in the heap between batches (`recsys.factorised`)."""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def deterministic():
    """Same seed, same model. On CPU the backward of ``net.users[u]`` (index_put_ with accumulate)
    adds rows in thread order; the attention amplifies those last-bit differences, and the same seed
    gave AMP-CF K=8 NDCG@10 of 0.073 and 0.084 in two runs. PyTorch's deterministic kernels cost
    nothing measurable here (epoch times within noise)."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


#: glibc's mallopt parameters and their defaults (malloc/malloc.c)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536


@contextmanager
def keep_freed_memory():
    """While training, freed memory stays in the heap for the next batch (glibc; elsewhere a no-op).

    A full-catalog softmax batch allocates and frees tensors of tens of MB. glibc serves blocks that
    large with mmap and unmaps them on free, so every batch page-faulted its memory in again: AMP-CF
    K=8 on ML-100k spent 28 s of system time in 33 s of two epochs; with the heap kept, 14.5 s wall
    and the same parameters bit for bit (only where memory comes from changes). Defaults come back
    after training, so the process returns memory to the system as before."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        yield
        return
    mallopt(_M_MMAP_MAX, 0)
    mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    try:
        yield
    finally:
        mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
