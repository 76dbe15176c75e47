"""A GPU node dies mid-run (``ray.cluster_utils.Cluster``: a head and GPU worker nodes on this machine).

The model actor on the lost node is restarted (``max_restarts``) and its in-flight shards are
retried (``max_task_retries=-1``); every question must end up in the shard files exactly once
and every shard in the manifest once, done.

How fast the run notices depends on Ray's GCS health checks of the raylets (Ray 2.60 defaults:
``health_check_period_ms=3000``, ``health_check_timeout_ms=10000``,
``health_check_failure_threshold=5``): a killed raylet refuses the checks at once, so it is
marked dead after about ``threshold x period`` = 15 s (13.4 s measured here); a host that goes
silent makes every check wait for its timeout: about ``threshold x (period + timeout)`` = 65 s
(66.3 s measured with a SIGSTOPped raylet). These tests run with :data:`FAST_HEALTH_CHECKS`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import polars as pl
import pytest

from ray_bench.config import RunConfig
from ray_bench.runner import driver
from tests.runner.conftest import make_questions

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

#: GCS health checks of the head (``_system_config``; on a real cluster ``RAY_<name>`` on the head's
#: ``ray start``): a killed node is marked dead after about threshold x period = 1.5 s.
FAST_HEALTH_CHECKS = {"health_check_period_ms": 500, "health_check_timeout_ms": 500,
                      "health_check_failure_threshold": 3}
#: A node killed mid-run must be marked dead within this many seconds: threshold x period + one
#: timeout = 2 s, plus 8 s for a busy shared 2-core machine (1.2-3.9 s measured). Still below the
#: (threshold - 1) x period = 12 s that Ray's defaults cannot beat (13.4 s measured), so the
#: assertion fails if the settings do not reach the GCS.
DETECTION_BOUND_S = (FAST_HEALTH_CHECKS["health_check_failure_threshold"] * FAST_HEALTH_CHECKS["health_check_period_ms"]
                     + FAST_HEALTH_CHECKS["health_check_timeout_ms"]) / 1000 + 8
#: After that, the restarted actor (a new worker process, its engine loaded) starts its first shard
#: within this many seconds (0.6-3.1 s measured).
RESTART_BOUND_S = 20
#: No shard landed for this long after the node loss: the run is stuck.
STALL_S = 20

TABLES = {"ToyA": make_questions(16, 0, "ToyA", "a"), "ToyB": make_questions(12, 4, "ToyB", "b")}
SHARD_SIZE = 2
EXPECTED_SHARDS = {f"m/{name}/shard-{i:05d}" for name in TABLES for i in range(16 // SHARD_SIZE)}


class Stalled(Exception):
    """The run made no progress after the node loss (the restarted actor got no GPU: a deadlock)."""


@pytest.fixture(scope="module")
def cluster():
    """A head without GPUs and three worker nodes with one logical GPU each, fast health checks."""
    from ray.cluster_utils import Cluster

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "disabled")
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        # Cluster records its address in /tmp/ray/ray_current_cluster, so any `ray.init()` on this
        # machine (other test runs) would join it, and its shutdown deletes the file whoever wrote
        # it. The driver here connects by address: record nothing, delete nothing.
        patch.setattr(ray._private.utils, "write_ray_address", lambda *args, **kwargs: None)
        patch.setattr(ray._common.utils, "reset_ray_address", lambda *args, **kwargs: None)
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "num_gpus": 0, "include_dashboard": False, "temp_dir": "/tmp/rbnl",
            "_system_config": FAST_HEALTH_CHECKS})
        try:
            for _ in range(3):
                cluster.add_node(num_gpus=1, num_cpus=1)
            ray.init(address=cluster.address, log_to_driver=False)
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()


@pytest.fixture
def data(monkeypatch):
    monkeypatch.setattr(driver, "load_questions", lambda config: dict(TABLES))


def _alive(node_id: str) -> bool:
    return any(n["NodeID"] == node_id and n["Alive"] for n in ray.nodes())


def _gpu_workers(cluster, count: int) -> list:
    """Make the cluster have exactly ``count`` live GPU worker nodes."""
    while len(cluster.worker_nodes) > count:
        node = next(iter(cluster.worker_nodes))
        cluster.remove_node(node, allow_graceful=False)
        deadline = time.time() + 30  # an actor must not be placed on it before the GCS knows
        while _alive(node.node_id) and time.time() < deadline:
            time.sleep(0.1)
    while len(cluster.worker_nodes) < count:
        cluster.add_node(num_gpus=1, num_cpus=1)
    return list(cluster.worker_nodes)


def _shards(out) -> dict:
    try:
        return json.loads((out / "manifest.json").read_text()).get("shards") or {}
    except (OSError, ValueError):  # not written yet
        return {}


def _done(out) -> list[dict]:
    return [e for e in _shards(out).values() if e.get("status") == "done"]


class _Run:
    """``driver.run`` in a thread: one replica per GPU node, shards of 0.5 s (the run lasts ~8 s)."""

    def __init__(self, tmp_path):
        self.config = RunConfig(models=["m=toy/m"], datasets=list(TABLES), data_dir=tmp_path / "data",
                                out_dir=tmp_path / "out", shard_size=SHARD_SIZE,
                                engine={"name": "dummy", "options": {"delay_s": 0.25}},
                                resources={"device": "gpu", "replicas": 2})
        self.summary = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._target, daemon=True)
        self.thread.start()

    def _target(self):
        try:
            self.summary = driver.run(self.config, progress=False)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test
            self.error = exc

    def both_replicas_working(self) -> list[dict]:
        """Wait until each replica landed a shard; its entries (node_id, pid)."""
        deadline = time.time() + 60
        while time.time() < deadline and self.thread.is_alive():
            done = _done(self.config.out_dir)
            if len({e["pid"] for e in done}) == 2:
                return done
            time.sleep(0.05)
        raise AssertionError(f"the replicas never both landed a shard: {_done(self.config.out_dir)}, {self.error}")


def _kill(cluster, node_id: str) -> float:
    node = next(n for n in cluster.worker_nodes if n.node_id == node_id)
    killed_at = time.time()
    cluster.remove_node(node, allow_graceful=False)  # SIGKILL: raylet, object store, the actor
    return killed_at


def _check_exactly_once(run: _Run) -> dict:
    """Every question in the shard files once, every shard in the manifest once and done."""
    out = run.config.out_dir
    if run.error is not None:
        raise run.error
    assert run.summary.ok, run.summary.failed
    assert run.summary.done == len(EXPECTED_SHARDS)  # a shard landed twice would count twice
    pairs = json.loads((out / "manifest.json").read_text(), object_pairs_hook=lambda kv: kv)
    keys = [key for key, _ in dict(pairs)["shards"]]
    assert sorted(keys) == sorted(EXPECTED_SHARDS)  # no key written twice in the JSON
    shards = _shards(out)
    assert all(entry["status"] == "done" for entry in shards.values()), shards
    files = sorted(out.glob("m/*/*.parquet"))
    assert sorted(str(f.relative_to(out).with_suffix("")) for f in files) == sorted(EXPECTED_SHARDS)
    rows = pl.read_parquet(files)
    counts = Counter(rows.get_column("question_id").to_list())
    expected = {qid for table in TABLES.values() for qid in table.column("question_id").to_pylist()}
    assert set(counts) == expected and set(counts.values()) == {1}
    assert rows.get_column("error").null_count() == rows.height
    return shards


def _restarted(shards: dict, before: list[dict]) -> list[dict]:
    """Shards of actor processes that did not exist before the kill, by start time."""
    old = {e["pid"] for e in before}
    return sorted((e for e in shards.values() if e["pid"] not in old), key=lambda e: e["started_at"])


def test_shards_of_a_lost_node_move_to_a_spare_gpu(cluster, data, tmp_path):
    nodes = _gpu_workers(cluster, 3)
    run = _Run(tmp_path)
    before = run.both_replicas_working()
    victim = before[0]["node_id"]
    survivor = next(e["node_id"] for e in before if e["node_id"] != victim)
    spare = next(n.node_id for n in nodes if n.node_id not in (victim, survivor))
    killed_at = _kill(cluster, victim)
    dead_at = None
    while run.thread.is_alive() and time.time() - killed_at < 120:
        if dead_at is None and not _alive(victim):
            dead_at = time.time()
        time.sleep(0.05)
    run.thread.join(5)
    assert not run.thread.is_alive(), "the run did not finish"
    shards = _check_exactly_once(run)
    restarted = _restarted(shards, before)
    assert restarted, "no shard ran on a restarted actor"
    # The only free GPU. (The old actor's process may still land a shard on the killed node: in
    # this simulation a worker outlives its SIGKILLed raylet for a moment.)
    assert {e["node_id"] for e in restarted} == {spare}
    assert dead_at is not None
    detected, first_shard = dead_at - killed_at, restarted[0]["started_at"] - killed_at
    print(f"\nnode loss: marked dead after {detected:.2f} s; restarted actor's first shard at +{first_shard:.2f} s")
    assert detected < DETECTION_BOUND_S
    assert first_shard < detected + RESTART_BOUND_S
    deadline = time.time() + 20  # ray.kill is asynchronous
    while ray.available_resources().get("GPU") != 2 and time.time() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("GPU") == 2  # the two live GPU nodes are free again


def test_shards_of_a_lost_node_move_to_the_surviving_node(cluster, data, tmp_path):
    _gpu_workers(cluster, 2)
    run = _Run(tmp_path)
    before = run.both_replicas_working()
    victim = before[0]["node_id"]
    survivor = next(e["node_id"] for e in before if e["node_id"] != victim)
    killed_at = _kill(cluster, victim)
    landed, progress_at = len(before), time.time()
    while run.thread.is_alive() and time.time() - progress_at < STALL_S and time.time() - killed_at < 120:
        now = len(_done(run.config.out_dir))
        if now != landed:
            landed, progress_at = now, time.time()
        time.sleep(0.1)
    stalled = run.thread.is_alive()
    if stalled:  # give the restart a GPU, as an autoscaler replacing the node would, so the run ends
        cluster.add_node(num_gpus=1, num_cpus=1)
    run.thread.join(60)
    assert not run.thread.is_alive(), "the run did not finish, even with a replacement node"
    shards = _check_exactly_once(run)
    restarted = _restarted(shards, before)
    assert restarted, "no shard ran on a restarted actor"
    if stalled:
        raise Stalled(f"no shard landed for {STALL_S} s after the node loss; {landed} of "
                      f"{len(EXPECTED_SHARDS)} done until a replacement GPU node joined")
    assert {e["node_id"] for e in restarted} == {survivor}
