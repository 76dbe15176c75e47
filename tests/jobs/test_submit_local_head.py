"""`jobs/submit.sh` against a real local head (`ray start --head`, token auth on), as users call it.

The job's working directory is Ray's unpacked copy of the project: relative paths in the config
must resolve against the directory submitted from (submit.sh passes ``--root``), results must land
there, and a job stopped mid-run then resubmitted must end with every question exactly once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DATASETS = ["BBQ", "CEB-Continuation-S"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """A local head with token auth and a dashboard on 127.0.0.1; stopped (only it) afterwards."""
    if shutil.which("ray", path=str(BIN)) is None:
        pytest.skip("the ray CLI is not installed next to this Python")
    home = tmp_path_factory.mktemp("home")
    temp_dir = f"/tmp/rbh{os.getpid()}"
    env = {**os.environ, "HOME": str(home), "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(home / ".ray" / "auth_token"),
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    generate = {k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN_PATH"}  # the file does not exist yet
    subprocess.run([BIN / "ray", "get-auth-token", "--generate"], env=generate, check=True, capture_output=True)
    dash = _free_port()
    subprocess.run([BIN / "ray", "start", "--head", f"--port={_free_port()}", f"--dashboard-port={dash}",
                    "--dashboard-host=127.0.0.1", "--num-cpus=2", "--num-gpus=0", f"--temp-dir={temp_dir}",
                    "--include-dashboard=true", "--disable-usage-stats",
                    # Free ports for the agents too: their defaults collide with any other local Ray.
                    f"--dashboard-agent-listen-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}",
                    f"--metrics-export-port={_free_port()}", f"--runtime-env-agent-port={_free_port()}"],
                   env=env, check=True, capture_output=True, timeout=120)
    env["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{dash}"
    try:
        _wait_for_job_agent(env)
        yield env
    finally:
        _stop_head(temp_dir)


def _wait_for_job_agent(env: dict[str, str], timeout: float = 90) -> None:
    """Right after `ray start` the head refuses jobs ("No available agent") for a few seconds."""
    deadline = time.time() + timeout
    while True:
        probe = subprocess.run([BIN / "ray", "job", "submit", "--", "true"], env=env, capture_output=True,
                               text=True, timeout=120)
        if probe.returncode == 0 or time.time() > deadline:
            assert probe.returncode == 0, probe.stdout + probe.stderr
            return
        time.sleep(1)


def _stop_head(temp_dir: str) -> None:
    """Kill this head's processes only (``ray stop`` would stop every Ray on the machine)."""
    from ray_bench.runner.session import reap_orphaned_agents

    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if temp_dir in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                pass
    time.sleep(1)
    reap_orphaned_agents()
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def project(tmp_path):
    """A user's project directory: prepared data and a config with relative paths only."""
    from ray_bench.datasets import prepare

    proj = tmp_path / "proj"
    prepare("sample", proj / "data", DATASETS, log=lambda *_: None)
    config = {"models": ["base=toy/base", "q=toy/q"], "datasets": DATASETS, "data_dir": "data",
              "out_dir": "runs/r1", "engine": {"name": "dummy", "options": {"delay_s": 0.3}},
              "resources": {"device": "cpu"}, "shard_size": 1, "bbq_context": "all"}
    (proj / "job.yaml").write_text(json.dumps(config))
    return proj


def _submit(head, project, submission_id, **popen):
    env = {**head, "RAY_BENCH_SUBMISSION_ID": submission_id}
    return subprocess.Popen(["bash", str(ROOT / "jobs" / "submit.sh"), "job.yaml"], cwd=project, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def _done(out: Path) -> int:
    try:
        shards = json.loads((out / "manifest.json").read_text())["shards"]
    except (OSError, ValueError, KeyError):
        return 0
    return sum(1 for e in shards.values() if e.get("status") == "done")


def _exactly_once(out: Path, data: Path) -> None:
    import pyarrow.parquet as pq

    from ray_bench.results import scan_run

    rows = scan_run(out, data).rows.select("model", "subset", "question_id").collect().rows()
    expected = {(m, d, q) for m in ("base", "q") for d in DATASETS
                for q in pq.read_table(data / f"{d}.parquet").column("question_id").to_pylist()}
    assert len(rows) == len(set(rows)) and set(rows) == expected


def test_submitted_job_writes_where_the_user_submitted_and_resumes_after_stop(head, project):
    out = project / "runs" / "r1"
    first = _submit(head, project, "rb-test-1")
    deadline = time.time() + 180
    while _done(out) < 3 and first.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert first.poll() is None, first.communicate()[0]
    stop = subprocess.run([BIN / "ray", "job", "stop", "rb-test-1"], env=head, capture_output=True, text=True,
                          timeout=120)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    first.wait(timeout=120)
    landed = _done(out)
    assert 3 <= landed < 24  # stopped mid-run; the results are in the project, not in Ray's copy
    second = _submit(head, project, "rb-test-2")
    log, _ = second.communicate(timeout=300)
    assert second.returncode == 0, log
    assert f"{24 - landed} shard(s) computed, {landed} already done" in log
    _exactly_once(out, project / "data")
