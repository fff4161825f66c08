"""Fold-in for a campaign's sessions: where it runs (`FoldInSettings`) and the batcher that solves
every session waiting on a model in one call, off the event loop (`FoldInBatcher`)."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class FoldInSettings:
    """How a campaign's sessions fold their users into the recommenders.

    ``executor``: where fold-ins run. "thread" or "process": off the event loop, batched (every
    session waiting on the same model is folded in one `fold_in_batch` call, bit-identical to one
    fold per user), so LLM calls keep flowing meanwhile; "process" also leaves the GIL to the loop.
    "inline": one `fold_in` per refold on the loop (the reference the others are tested against).

    ``warm_steps``: None (default) starts every refold cold, from the user's seed, so the events
    are exactly those of "inline". A number N starts each refold from the user's previous fold and
    runs N Adam steps instead of 60: cheaper, but the parameters, hence slates and events, differ
    from a cold fold (the first fold of a session is always cold).
    """

    executor: Literal["inline", "thread", "process"] = "thread"
    steps: int = 60
    warm_steps: int | None = None


_FOLD_MODELS: dict[str, object] = {}  # a fold-in worker process's models, by name


def _load_fold_models(paths: dict[str, str]) -> None:
    """Initialiser of the fold-in worker process: load each model once."""
    import torch

    from recsys import MF

    torch.set_num_threads(1)  # one core for the folds, the other for the event loop
    _FOLD_MODELS.update({name: MF.load(path) for name, path in paths.items()})  # `load` restores MF or AMP-CF


def _fold_in_worker(name: str, likes, seeds, steps, starts):
    return _FOLD_MODELS[name].fold_in_batch(likes, seeds, steps, starts)


class FoldInBatcher:
    """The fold-ins that sessions on one event loop wait for, solved off the loop in batches.

    A session awaits `fold`; requests queue per (model, steps); one drain task hands each queue to
    the worker as one batch, and whatever queues while the worker is busy becomes the next batch, so
    batches grow with the load and nothing waits on a timer.
    """

    def __init__(self, models: dict, settings: FoldInSettings, model_paths: dict[str, str] | None = None):
        self.models, self.settings, self.model_paths = models, settings, model_paths or {}
        self._queue: dict[tuple[str, int], list[tuple[np.ndarray, int, np.ndarray | None, asyncio.Future]]] = {}
        self._drain_task: asyncio.Task | None = None
        self._pool: Executor | None = None
        self.folds = self.n_batches = self.largest_batch = 0  # how much batching happened (counters, not a log)

    async def fold(self, name: str, liked: list[int], seed: int, start: np.ndarray | None = None) -> np.ndarray:
        """Mixture components [K, d] (user vectors) of model ``name`` for a user with these likes (see `fold_in`)."""
        steps = self.settings.steps if start is None else self.settings.warm_steps
        if self.settings.executor == "inline":
            self._count(1)
            return self.models[name].fold_in(np.asarray(liked), steps, seed, start)
        fut = asyncio.get_running_loop().create_future()
        self._queue.setdefault((name, steps), []).append((np.asarray(liked, dtype=np.int64), seed, start, fut))
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = asyncio.get_running_loop().create_task(self._drain())
        return await fut

    def _count(self, size: int) -> None:
        self.folds += size
        self.n_batches += 1
        self.largest_batch = max(self.largest_batch, size)

    def _executor(self) -> Executor:
        if self._pool is None:
            if self.settings.executor == "process":
                import multiprocessing

                paths = {n: self.model_paths[n] for n in self.models if n in self.model_paths}
                self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_load_fold_models, initargs=(paths,))
            else:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="fold-in")
        return self._pool

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0)  # sessions resumed in this same loop iteration queue theirs first
        while self._queue:
            (name, steps), batch = self._queue.popitem()
            likes, seeds, starts, futs = (list(x) for x in zip(*batch))
            self._count(len(batch))
            try:
                if self.settings.executor == "process":
                    out = await loop.run_in_executor(self._executor(), _fold_in_worker, name, likes, seeds, steps, starts)
                else:
                    out = await loop.run_in_executor(self._executor(), self.models[name].fold_in_batch, likes, seeds,
                                                     steps, starts)
            except Exception as exc:  # e.g. a RecsysError: every session of the batch gets it
                out = [exc] * len(futs)
            for fut, res in zip(futs, out):
                if not fut.done():  # a cancelled session no longer waits
                    fut.set_exception(res) if isinstance(res, Exception) else fut.set_result(res)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
