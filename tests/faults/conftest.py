"""Fault injection: a prepared sample, CLI runs in subprocesses, and the exactly-once check.

Every fault test ends with :func:`assert_exactly_once`: what the analysis reads (``scan_run``)
holds every planned (model, question) exactly once, and nothing written before the fault
was lost or rewritten (:func:`snapshot` / :func:`assert_kept`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

DATASETS = ["BBQ", "CEB-Continuation-S"]


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory) -> Path:
    from ray_bench.datasets import prepare

    out = tmp_path_factory.mktemp("fault-data")
    prepare("sample", out, DATASETS, log=lambda *_: None)
    return out


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(Path(__file__).parents[2]))
    return env


def run_args(data: Path, out: Path, *extra: str, models=("base=toy/base", "q=toy/q"), delay=0.0) -> list[str]:
    args = [sys.executable, "-m", "ray_bench.cli.main", "run", "--data", str(data), "--out", str(out),
            "--engine", "dummy", "--shard-size", "1", "--bbq-context", "all", "--device", "cpu", "--quiet"]
    for model in models:
        args += ["--model", model]
    for name in DATASETS:
        args += ["--dataset", name]
    if delay:
        args += ["--engine-option", f"delay_s={delay}"]
    return [*args, *extra]


def cli(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=cli_env(), capture_output=True, text=True, timeout=timeout)


def done_shards(out: Path) -> int:
    try:
        shards = json.loads((out / "manifest.json").read_text()).get("shards", {})
    except (OSError, ValueError):
        return 0
    return sum(1 for e in shards.values() if e.get("status") == "done")


def start_and_kill(args: list[str], out: Path, *, after_shards: int | None, after_s: float = 0.0) -> None:
    """Start a driver and SIGKILL it once ``after_shards`` shards landed (or after ``after_s``)."""
    proc = subprocess.Popen(args, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        if after_shards is None:
            time.sleep(after_s)
        else:
            while done_shards(out) < after_shards and proc.poll() is None and time.time() < deadline:
                time.sleep(0.05)
        assert proc.poll() is None, "the driver finished before the kill"
    finally:
        proc.kill()
        proc.wait()


def expected_keys(data: Path, models=("base", "q")) -> set[tuple[str, str, str]]:
    import pyarrow.parquet as pq

    keys = set()
    for name in DATASETS:
        ids = pq.read_table(data / f"{name}.parquet", columns=["question_id"]).column("question_id").to_pylist()
        keys |= {(m, name, q) for m in models for q in ids}
    return keys


def assert_exactly_once(out: Path, data: Path, models=("base", "q")) -> None:
    """Every planned (model, subset, question) is read exactly once by the analysis' reader."""
    from ray_bench.results import scan_run

    rows = scan_run(out, data).rows.select("model", "subset", "question_id").collect().rows()
    assert len(rows) == len(set(rows)), "a question is counted twice"
    assert set(rows) == expected_keys(data, models)


def snapshot(out: Path) -> dict[Path, tuple[int, bytes]]:
    """Every shard file's mtime and bytes (to prove nothing written was lost or rewritten)."""
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("*/*/shard-*.parquet")}


def assert_kept(before: dict[Path, tuple[int, bytes]]) -> None:
    for path, (mtime, data) in before.items():
        assert path.exists() and path.read_bytes() == data and path.stat().st_mtime_ns == mtime, path


def orphaned_agents(wait_s: float = 0.0) -> set[int]:
    """Pids of processes whose ``RAY_RAYLET_PID`` names a dead raylet (waits up to ``wait_s`` for one)."""
    deadline = time.time() + wait_s
    while True:
        found = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                env = dict(i.split("=", 1) for i in (entry / "environ").read_text().split("\0") if "=" in i)
            except (OSError, ValueError):
                continue
            raylet = env.get("RAY_RAYLET_PID", "")
            if raylet.isdigit() and not Path(f"/proc/{raylet}").exists():
                found.add(int(entry.name))
        if found or time.time() >= deadline:
            return found
        time.sleep(0.2)


def alive(pid: int) -> bool:
    """Running (a zombie, killed but not yet waited for, is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
