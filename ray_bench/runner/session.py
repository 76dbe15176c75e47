"""Connecting to Ray and deciding what each model actor reserves."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ray_bench.config import ResourceConfig


@contextmanager
def ray_session(address: str | None = None) -> Iterator[None]:
    """Use the Ray instance already initialised, join ``address``/``RAY_ADDRESS``, or start one.

    A local instance started here listens on 127.0.0.1 only, so it may run with token auth
    off; usage stats are off and it has no dashboard; it is shut down on exit.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
    else:
        reap_orphaned_agents()
        _listen_on_localhost(ray)
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        debug = os.environ.get("RAY_BENCH_DEBUG", "") not in ("", "0")
        ray.init(include_dashboard=False, log_to_driver=debug, configure_logging=debug)
    try:
        yield
    finally:
        ray.shutdown()


def resolve_device(resources: ResourceConfig) -> str:
    """``gpu`` or ``cpu``: ``auto`` picks GPUs when the cluster has any right now."""
    import ray

    gpus = ray.cluster_resources().get("GPU", 0)
    if resources.device == "gpu" and gpus < resources.gpus_per_worker:
        # An autoscaling cluster adds GPU nodes on demand; say so instead of hanging silently.
        sys.stderr.write(
            f"Waiting for GPUs: the cluster has {gpus:g} now and each model actor needs "
            f"{resources.gpus_per_worker} (an autoscaler may add nodes).\n"
        )
    if resources.device != "auto":
        return resources.device
    return "gpu" if gpus >= resources.gpus_per_worker else "cpu"


def actor_options(resources: ResourceConfig, device: str) -> dict[str, Any]:
    """Ray actor options of a model worker.

    GPU actors reserve no CPU: an actor asking for GPUs without ``num_cpus`` holds a
    CPU for its whole life and can starve a small node (pitfalls.md). Crashed actors
    are restarted and their in-flight shards retried (results are keyed by shard, so a
    retried shard cannot duplicate rows).
    """
    base: dict[str, Any] = {"max_restarts": resources.max_restarts, "max_task_retries": -1}
    # A stage pinned to CPUs (an API engine's, ``AnswerStage``) gets CPU actors in a GPU run too.
    if device == "gpu" and resources.device != "cpu":
        return {**base, "num_gpus": resources.gpus_per_worker, "num_cpus": 0}
    return {**base, "num_cpus": resources.cpus_per_worker, "num_gpus": 0}


def reap_orphaned_agents() -> list[int]:
    """Kill Ray agent processes left behind by a local instance whose raylet is gone.

    After a SIGKILL of the driver that started a local Ray, its dashboard and runtime-env
    agents can outlive the raylet (their parent); each would hold memory and ports forever.
    An agent is recognised by ``RAY_RAYLET_PID`` in its environment naming a dead process; only
    this user's processes are touched. Linux only (reads ``/proc``); elsewhere a no-op.

    Returns:
        The pids that were killed.
    """
    import signal
    from pathlib import Path

    proc = Path("/proc")
    if not proc.is_dir():
        return []
    killed = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            env = dict(item.split("=", 1) for item in (entry / "environ").read_text().split("\0") if "=" in item)
        except (OSError, ValueError):
            continue
        raylet = env.get("RAY_RAYLET_PID", "")
        if raylet.isdigit() and not (proc / raylet).exists():
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
            except OSError:
                pass
    return killed


def _listen_on_localhost(ray: Any) -> None:
    """Make the local instance bind every socket to 127.0.0.1 (it runs without auth).

    On Linux Ray binds the GCS, raylet and workers to the routable address
    (``ray/_private/services.py: get_node_ip_address``) unless ``ENABLE_RAY_CLUSTER`` is off,
    which ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` sets only before ``ray`` is first imported; the
    CLI sets that variable at start, this covers library callers.
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if constants is not None and hasattr(constants, "ENABLE_RAY_CLUSTER"):
        constants.ENABLE_RAY_CLUSTER = False
