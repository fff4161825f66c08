"""Ray beyond one process: a real local cluster, a campaign on it, and a worker node killed mid-run.

The cluster is a head (no CPUs, so it runs no sessions) and two worker nodes, each its own
`ray start --block` process tree in its own process group, with a private temp dir and ports,
so nothing here meets another Ray on the machine; the fixture kills every process it started,
pass or fail. The campaign talks to tests/servers/fault_openai.py (answers are a pure function
of the request), so the local executor's run is the reference and every difference is ours.

The driver is `personasim campaign run --executor ray --ray-address HEAD`, a child process like
a user's. Once some sessions are on disk and a session is running on worker node 1, that node's
whole process tree is killed with SIGKILL. Its session must be run again elsewhere (Ray's task
retry), and events.jsonl must end with exactly the reference turns: none lost, none twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from evals.campaign.events import read_events
from evals.campaign.runner import replay_digest
from tests.servers.process import free_port, serve
from tests.test_evals_campaign import CONFIG, _ran, _turns, _write_config

ROOT = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).with_name("ray")


class LocalRayCluster:
    """`ray start --block` nodes on 127.0.0.1, each in its own session (so one kill takes its whole tree).

    Every node gets its own temp dir and explicit ports: two nodes on one host would otherwise
    both reach for the dashboard agent's and the metrics exporter's default ports."""

    def __init__(self, root: Path):
        self.root = root
        self.nodes: dict[str, subprocess.Popen] = {}
        # every process seen under each node, for the cleanup (psutil checks a pid was not reused before a kill)
        self.seen: dict[str, dict[int, psutil.Process]] = {}
        self.address = ""
        # Health checks every 0.5 s, three misses: a dead node is declared in ~2 s, not ~30 s.
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled",
                    "RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "1000",
                    "RAY_health_check_failure_threshold": "3"}

    def start(self, name: str, *, head: bool = False, cpus: int = 1) -> None:
        ports = {flag: free_port() for flag in ("--node-manager-port", "--object-manager-port",
                                                 "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
                                                 "--runtime-env-agent-port", "--metrics-export-port")}
        args = [str(RAY), "start", "--block", "--disable-usage-stats", "--num-cpus", str(cpus),
                "--object-store-memory", str(100 * 2**20), "--include-log-monitor", "false",
                "--temp-dir", str(self.root / name), "--node-ip-address", "127.0.0.1",
                *(str(x) for kv in ports.items() for x in kv)]
        if head:
            port = free_port()
            args += ["--head", "--port", str(port), "--include-dashboard", "false"]
            self.address = f"127.0.0.1:{port}"
        else:
            args += ["--address", self.address]
        log = open(self.root / f"{name}.log", "w")
        self.nodes[name] = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        self.seen[name] = {}
        self.processes(name)
        log.close()
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in self.log(name):
            if self.nodes[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray node {name} did not start:\n{self.log(name)[-3000:]}")
            time.sleep(0.2)

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def processes(self, name: str) -> list[psutil.Process]:
        """The node's `ray start` and every process below it (raylet, agents, workers), alive now."""
        try:
            top = psutil.Process(self.nodes[name].pid)
            procs = [top, *top.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        self.seen[name].update((p.pid, p) for p in procs)
        return procs

    def running(self, name: str, task: str) -> int:
        """How many of the node's worker processes are executing ``task`` now (their title is `ray::TASK`)."""
        busy = 0
        for p in self.processes(name):
            with contextlib.suppress(psutil.Error):
                busy += " ".join(p.cmdline()).startswith(f"ray::{task}")
        return busy

    def kill(self, name: str) -> int:
        """SIGKILL the node's whole tree (its process group, and any worker that left it); returns how many."""
        procs = self.processes(name)
        if self.nodes[name].poll() is None:  # never signal a group whose leader is gone: its id may be reused
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.nodes[name].pid, signal.SIGKILL)
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(procs, timeout=10)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.nodes[name].wait(timeout=10)
        return len(procs)

    def stop(self) -> None:
        """Kill everything this cluster started, workers first, and anything ever seen under a node that is
        still running (a worker that outlived its raylet)."""
        for name in reversed(list(self.nodes)):
            self.kill(name)
        for p in [p for seen in self.seen.values() for p in seen.values()]:
            with contextlib.suppress(psutil.Error):
                if p.is_running():  # the same process, not a reused pid
                    p.kill()


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[LocalRayCluster]:
    # A short path of our own: Ray's unix sockets live under the temp dir and their paths are length-limited.
    root = Path(tempfile.mkdtemp(prefix="psim-ray-", dir="/tmp"))
    cluster = LocalRayCluster(root)
    try:
        cluster.start("head", head=True, cpus=0)
        cluster.start("worker1")
        cluster.start("worker2")
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def server_config(tmp_path_factory):
    port = free_port()
    args = ["-m", "tests.servers.fault_openai", "--port", str(port), "--delay", "0.1", "--answer-schema"]
    with serve(args, port) as url:
        cfg = {**CONFIG, "name": "ray-cluster-campaign", "recsys": {**CONFIG["recsys"], "epochs": 1},
               "llm": {"backend": "openai", "base_url": url, "model": "fault-echo", "concurrency": 4}}
        yield _write_config(cfg, tmp_path_factory.mktemp("server") / "campaign.yaml")


def _cluster_nodes(address: str) -> tuple[int, float]:
    """(alive nodes, CPUs) as a driver attached to ``address`` sees them."""
    code = ("import ray,sys; ray.init(address=sys.argv[1], log_to_driver=False); "
            "print(sum(n['Alive'] for n in ray.nodes()), ray.cluster_resources().get('CPU', 0))")
    res = subprocess.run([sys.executable, "-c", code, address], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    alive, cpus = res.stdout.split()[-2:]
    return int(alive), float(cpus)


@pytest.fixture(scope="module")
def local_run(server_config, tmp_path_factory) -> Path:
    """The campaign on the local executor: the reference turns, and the trained models the Ray runs start from."""
    return _ran(server_config, tmp_path_factory.mktemp("local") / "out", "--no-report", "--executor", "local", timeout=600)


def _ray_run_with_a_kill(cluster: LocalRayCluster, config: Path, out: Path, local: Path,
                         names: list[str]) -> tuple[int, int, str]:
    """`campaign run --executor ray` as a child process, starting from the local run's trained models (a
    campaign trains only when OUT has none: training is the driver's work under either executor). Once two
    turns are on disk, SIGKILL the first of ``names`` that is running a session. Returns (turns on disk
    just before the kill, the driver's exit code, its stderr)."""
    shutil.copytree(local / "models", out / "models")
    driver = subprocess.Popen([sys.executable, "-m", "evals.cli", "campaign", "run", str(config), "--out", str(out),
                               "--quiet", "--no-report", "--executor", "ray", "--ray-address", cluster.address],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events, deadline, written_before = out / "events.jsonl", time.monotonic() + 600, None
    try:
        while written_before is None and time.monotonic() < deadline and driver.poll() is None:
            if events.exists() and events.read_bytes().count(b"\n") >= 2:
                # one look at the process table: a second look could find the session just finished
                running = {n: cluster.running(n, "run_job_task") for n in names}
                busy = [n for n in names if running[n]]
                if busy:
                    written_before = events.read_bytes().count(b"\n")
                    assert running[busy[0]] == 1  # one session on a one-CPU node: killing it loses that session's turns
                    assert cluster.kill(busy[0]) >= 2  # `ray start`, its raylet and at least the busy worker
            time.sleep(0.05)
        assert written_before is not None, "the campaign finished before a worker could be killed"
        _, stderr = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    return written_before, driver.returncode, stderr


def test_a_worker_node_killed_mid_campaign_loses_and_duplicates_no_turn(ray_cluster, server_config, local_run, tmp_path):
    local = local_run
    reference = _turns(local)
    assert _cluster_nodes(ray_cluster.address) == (3, 2.0)  # head (0 CPUs) + two one-CPU workers

    out = tmp_path / "ray"
    written_before, code, stderr = _ray_run_with_a_kill(ray_cluster, server_config, out, local, ["worker1"])
    assert code == 0, stderr[-3000:]
    assert written_before < len(reference)

    lines = (out / "events.jsonl").read_bytes().count(b"\n")
    keys = Counter(k for k, *_ in _turns(out))
    assert lines == len(keys) == len(reference) > written_before  # nothing lost, nothing written twice
    assert max(keys.values()) == 1
    assert _turns(out) == reference
    # and every field of every turn but its wall time, as a resume would check it
    digests = [sorted(map(replay_digest, read_events(run / "events.jsonl"))) for run in (out, local)]
    assert digests[0] == digests[1]
    assert _cluster_nodes(ray_cluster.address) == (2, 1.0)  # the campaign finished on the surviving worker


def test_a_session_lost_beyond_its_retries_stops_the_campaign_with_one_line_and_keeps_the_turns(
        ray_cluster, server_config, local_run, tmp_path):
    """With `ray_retries: 0` a killed worker's session is lost: the driver exits 2 with one line naming
    --resume, every turn already written stays whole, and a resume on the local executor finishes
    with the reference turns."""
    import yaml

    cfg = yaml.safe_load(server_config.read_text())
    config = _write_config({**cfg, "ray_retries": 0}, tmp_path / "no-retries.yaml")
    out = tmp_path / "ray"
    written_before, code, stderr = _ray_run_with_a_kill(ray_cluster, config, out, local_run, ["worker1", "worker2"])
    assert code == 2, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr
    assert "Ray lost a session after its retries" in lines[0] and "--resume" in lines[0]
    written = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]  # every line whole
    assert written_before <= len(written) < len(_turns(local_run))
    _ran(config, out, "--no-report", "--resume", "--executor", "local", timeout=600)
    assert _turns(out) == _turns(local_run)
