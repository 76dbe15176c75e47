"""The local Ray instance the CLI starts (auth off) listens on loopback only; orphaned agents are reaped."""

import os

import pytest

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")
pytestmark = pytest.mark.slow


def test_local_instance_listens_on_loopback_only(monkeypatch):
    from ray_bench.runner.session import ray_session

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with ray_session():
        assert ray.get(ray.remote(lambda: 2).remote()) == 2  # a worker is up and listening too
        ours = {p.pid for p in psutil.Process().children(recursive=True)} | {os.getpid()}
        listening = [c for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in ours]
        assert listening, "found no listening socket of the local Ray instance"
        outside = sorted({c.laddr.ip for c in listening} - {"127.0.0.1", "::1", "::ffff:127.0.0.1"})
        assert not outside, f"the local instance listens on {outside}"


def test_reaper_kills_only_processes_whose_raylet_is_dead(tmp_path):
    import subprocess
    import sys
    import time

    from ray_bench.runner.session import reap_orphaned_agents

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer exists
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    orphan = subprocess.Popen(sleeper, env={**os.environ, "RAY_RAYLET_PID": str(dead.pid)})
    kept = subprocess.Popen(sleeper, env={**os.environ, "RAY_RAYLET_PID": str(os.getpid())})
    try:
        time.sleep(0.3)
        killed = reap_orphaned_agents()
        assert orphan.pid in killed and kept.pid not in killed
        assert orphan.wait(timeout=5) != 0 and kept.poll() is None
    finally:
        for proc in (orphan, kept):
            proc.kill()
            proc.wait()
