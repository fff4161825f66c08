"""Where the LLM answer cache may live: SQLite's locks do not hold across machines on a network file system."""

from __future__ import annotations

from collections import namedtuple

from simulator.llm.cache import network_filesystem

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
