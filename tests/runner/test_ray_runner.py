"""The Ray runner on a local cluster with logical GPUs (no real GPU needed)."""

import json
import time

import polars as pl
import pytest

from ray_bench.config import RunConfig
from ray_bench.errors import ResumeMismatchError
from ray_bench.runner import driver
from tests.runner.conftest import start_local_ray

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_cluster():
    ray = start_local_ray(num_cpus=4, num_gpus=2)
    yield
    ray.shutdown()


def _config(tmp_path, models, **kw):
    engine = {"name": "dummy", "options": kw.pop("options", {})}
    return RunConfig(models=models, datasets=["ToyA", "ToyB"], data_dir=tmp_path / "data",
                     out_dir=tmp_path / "out", engine=engine, shard_size=kw.pop("shard_size", 3), **kw)


def _shards(out):
    return json.loads((out / "manifest.json").read_text())["shards"]


def test_one_model_per_gpu_and_models_wait_their_turn(ray_cluster, toy_data, tmp_path):
    models = [f"m{i}=toy/m{i}" for i in range(3)]
    config = _config(tmp_path, models, options={"delay_s": 0.05}, resources={"device": "gpu"})
    summary = driver.run(config, progress=False)
    assert summary.ok and summary.device == "gpu" and summary.done == 3 * 4
    shards = _shards(config.out_dir)
    spans = {}
    for key, entry in shards.items():
        model = key.split("/")[0]
        assert len(entry["gpus"]) == 1, entry  # exactly one GPU per actor
        start, end = entry["started_at"], entry["started_at"] + entry["seconds"]
        gpus, lo, hi = spans.get(model, (set(), start, end))
        spans[model] = (gpus | set(entry["gpus"]), min(lo, start), max(hi, end))
    assert all(len(g) == 1 for g, _, _ in spans.values())  # a model stays on its GPU
    # Never more than 2 models (2 GPUs) at once, and overlapping models use different GPUs.
    for t in sorted(lo for _, lo, _ in spans.values()):
        live = [(g, m) for m, (g, lo, hi) in spans.items() if lo <= t < hi]
        assert len(live) <= 2
        assert len({next(iter(g)) for g, _ in live}) == len(live)
    deadline = time.time() + 20  # ray.kill is asynchronous
    while ray.available_resources().get("GPU") != 2 and time.time() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("GPU") == 2  # actors released their GPUs


def test_resume_skips_done_shards_and_recomputes_deleted(ray_cluster, toy_data, tmp_path):
    config = _config(tmp_path, ["base=toy/base"], resources={"device": "cpu"})
    first = driver.run(config, progress=False)
    files = sorted(config.out_dir.glob("base/*/shard-*.parquet"))
    assert first.done == len(files) == 4
    mtimes = {f: f.stat().st_mtime_ns for f in files}
    files[1].unlink()
    second = driver.run(config, progress=False)
    assert (second.done, second.skipped) == (1, 3)
    assert all(f.stat().st_mtime_ns == m for f, m in mtimes.items() if f != files[1])
    third = driver.run(config, progress=False)
    assert (third.done, third.skipped) == (0, 4)
    rows = pl.read_parquet(list(config.out_dir.glob("base/*/shard-*.parquet")))
    assert rows.height == 12 and rows.get_column("question_id").n_unique() == 12
    assert len(json.loads((config.out_dir / "manifest.json").read_text())["runs"]) == 3


def test_crashed_actor_is_restarted_and_its_shard_retried(ray_cluster, toy_data, tmp_path):
    marker = tmp_path / "crashed"
    config = _config(tmp_path, ["base=toy/base"], resources={"device": "cpu"},
                     options={"crash_on": "a/c/4", "crash_marker": str(marker)})
    summary = driver.run(config, progress=False)
    assert marker.exists(), "the worker never crashed"
    assert summary.ok and summary.done == 4
    entry = _shards(config.out_dir)["base/ToyA/shard-00001"]
    assert entry["status"] == "done" and entry["pid"] != int(marker.read_text())
    rows = pl.read_parquet(config.out_dir / "base/ToyA/shard-00001.parquet")
    assert rows.get_column("question_id").to_list() == ["a/c/3", "a/c/4", "a/c/5"]
    assert rows.get_column("error").null_count() == 3


def test_question_error_keeps_the_shard(ray_cluster, toy_data, tmp_path):
    config = _config(tmp_path, ["base=toy/base"], resources={"device": "cpu"},
                     options={"fail_on": ["b/o/1"]})
    summary = driver.run(config, progress=False)
    assert summary.ok and summary.question_errors == {("base", "ToyB"): 1}
    rows = pl.read_parquet(config.out_dir / "base/ToyB/shard-00001.parquet")
    errors = dict(zip(rows.get_column("question_id"), rows.get_column("error")))
    assert errors["b/o/1"].startswith("injected failure") and errors["b/o/0"] is None
    assert _shards(config.out_dir)["base/ToyB/shard-00001"]["question_errors"] == 1


def test_question_errors_are_listed_and_fail_the_run_under_strict(ray_cluster, toy_data, tmp_path, capsys):
    from ray_bench.cli.main import main

    argv = ["run", "--model", "base=toy/base", "--dataset", "ToyA", "--dataset", "ToyB",
            "--data", str(tmp_path / "data"), "--engine", "dummy", "--device", "cpu", "--quiet",
            "--engine-option", "fail_on=[a/c/0, a/c/4, b/o/1]"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", str(tmp_path / "lenient")])
    assert exit_info.value.code == 0  # question errors alone do not fail a run
    err = capsys.readouterr().err
    assert "base / ToyA: 2 question(s) got an error" in err and "base / ToyB: 1 question(s)" in err
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", str(tmp_path / "strict"), "--strict"])
    assert exit_info.value.code == 1
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith(("Error:", "Hint:"))]
    assert lines[0] == "Error: --strict: 3 question(s) got an error in 2 (model, dataset) pair(s)"
    assert lines[1].startswith("Hint:") and len(lines) == 2


def test_changed_shard_plan_is_refused_before_ray(toy_data, tmp_path):
    import pyarrow as pa

    from ray_bench.results import write_shard
    from ray_bench.schema import result_schema

    config = _config(tmp_path, ["base=toy/base"], resources={"device": "cpu"})
    empty = pa.Table.from_pylist([], schema=result_schema())
    write_shard(config.out_dir / "base/ToyA/shard-00000.parquet", empty, "0000000000000000")
    with pytest.raises(ResumeMismatchError, match="other questions"):
        driver.run(config, progress=False)
