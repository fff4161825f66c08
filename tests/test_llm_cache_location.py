"""Where the LLM answer cache may live: SQLite's locks do not hold across machines on a network file system;
on one machine, many processes may open one new cache at once (Ray workers)."""

from __future__ import annotations

import multiprocessing
from collections import namedtuple

from simulator.llm.cache import ResponseCache, network_filesystem
from simulator.llm.types import Completion

Part = namedtuple("Part", "mountpoint fstype")  # the two fields of psutil.disk_partitions' records that matter


def test_a_path_on_a_network_mount_is_named_with_its_innermost_mount():
    parts = [Part("/", "ext4"), Part("/mnt", "nfs4"), Part("/mnt/scratch", "ext4"), Part("/data", "fuse.sshfs"),
             Part("/home", "cifs")]
    assert network_filesystem("/mnt/run1/llm_cache", parts) == "nfs4 at /mnt"
    assert network_filesystem("/mnt/scratch/run1", parts) is None  # a local disk mounted inside the share
    assert network_filesystem("/data/run", parts) == "fuse.sshfs at /data"
    assert network_filesystem("/home/u/not/yet/made", parts) == "cifs at /home"  # need not exist
    assert network_filesystem("/var/tmp/run", parts) is None
    assert network_filesystem("/mntx/run", parts) is None  # a prefix of the name is not a parent folder
    over = [Part("/", "ext4"), Part("/data", "ext4"), Part("/data", "nfs4")]  # an NFS share mounted over a disk
    assert network_filesystem("/data/run", over) == "nfs4 at /data"
    assert network_filesystem("/data/run", over[:2] + [Part("/data", "ext4")]) is None


def test_this_machines_temporary_folder_is_read_from_the_real_mount_table(tmp_path):
    assert network_filesystem(tmp_path / "run") is None


def _open_and_write(folder: str, i: int, barrier, results) -> None:
    barrier.wait()  # every process opens the new cache at the same moment
    try:
        cache = ResponseCache(folder)
        for k in range(20):
            cache.put(f"{i}-{k}", Completion(text=f"answer {i}-{k}", ok=True))
        cache.close()
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - the parent asserts on what happened
        results.put(f"{type(exc).__name__}: {exc}")


def test_many_processes_may_open_one_new_cache_at_once(tmp_path):
    """Switching a new file to WAL takes it exclusively, and SQLite runs no busy handler for that: before
    `_use_wal`, about half of such starts had a process fail with "database is locked"."""
    ctx = multiprocessing.get_context("spawn")
    for trial in range(4):
        folder, n = tmp_path / f"cache{trial}", 6
        barrier, results = ctx.Barrier(n), ctx.Queue()
        procs = [ctx.Process(target=_open_and_write, args=(str(folder), i, barrier, results)) for i in range(n)]
        for proc in procs:
            proc.start()
        outcomes = [results.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join(timeout=60)
        assert outcomes == ["ok"] * n, outcomes
        cache = ResponseCache(folder)
        assert len(cache) == n * 20 and cache.get("3-7").text == "answer 3-7"
        cache.close()
