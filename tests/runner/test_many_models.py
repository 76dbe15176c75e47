"""Many models over few (logical) GPUs: one model per GPU at a time, each GPU handed on as soon as
its model is done, a model that cannot load frees its GPU, replicas of one model share its shards.

``test_ray_runner.test_one_model_per_gpu_and_models_wait_their_turn`` covers 3 models on 2 GPUs
(at most 2 at once, one GPU per model, GPUs free after the run); ``test_engine_start_errors``
covers a model that cannot load in CPU mode. These add 10 models, the hand-over times, the load
failure on a GPU, and replicas.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter

import polars as pl
import pytest

from ray_bench.config import EngineConfig, ModelSpec, RunConfig
from ray_bench.errors import ModelLoadError
from ray_bench.runner import driver
from tests.runner.conftest import start_local_ray

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

THIS = "tests.runner.test_many_models"
CAUSE = "no kernel for uint8b128"
#: A model's next shard starts this long after its GPU was freed, at most: a new actor process
#: and its engine (0.3-1.5 s measured on 2 busy cores).
HANDOVER_S = 10.0


def failing_factory(model: ModelSpec, config: EngineConfig):
    """The dummy engine, except for the models in ``options.broken``: they fail to load.

    A failure is recorded (GPU ids, time) in ``options.record`` first.
    """
    from ray_bench.engines.dummy import DummyEngine

    options = dict(config.options)
    if model.name in options.pop("broken"):
        gpus = ray.get_runtime_context().get_accelerator_ids().get("GPU", [])
        with open(options["record"], "a") as f:
            f.write(json.dumps({"model": model.name, "gpus": [str(g) for g in gpus], "at": time.time()}) + "\n")
        time.sleep(0.3)  # hold the GPU a moment, as a real load would
        raise ModelLoadError(CAUSE)
    options.pop("record")
    return DummyEngine(model, config.model_copy(update={"options": options}))


@pytest.fixture(scope="module")
def ray_cluster():
    ray = start_local_ray(num_cpus=4, num_gpus=2, tag="rbm")
    yield
    ray.shutdown()


def _config(tmp_path, models, shard_size=3, **kw):
    return RunConfig(models=models, datasets=["ToyA", "ToyB"], data_dir=tmp_path / "data",
                     out_dir=tmp_path / "out", shard_size=shard_size, **kw)


def _shards(out) -> dict:
    return json.loads((out / "manifest.json").read_text())["shards"]


def _spans(shards: dict) -> dict[str, tuple[set[str], float, float]]:
    """Model -> (GPUs its shards ran on, first shard's start, last shard's end)."""
    spans: dict[str, tuple[set[str], float, float]] = {}
    for key, entry in shards.items():
        if entry["status"] != "done":
            continue
        start, end = entry["started_at"], entry["started_at"] + entry["seconds"]
        gpus, lo, hi = spans.get(key.split("/")[0], (set(), start, end))
        spans[key.split("/")[0]] = (gpus | set(entry["gpus"]), min(lo, start), max(hi, end))
    return spans


def _gpus_freed():
    deadline = time.time() + 20  # ray.kill is asynchronous
    while ray.available_resources().get("GPU") != 2 and time.time() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("GPU") == 2


def _rows_once(out, models, n_questions=12):
    for model in models:
        rows = pl.read_parquet(sorted(out.glob(f"{model}/*/*.parquet")))
        counts = Counter(rows.get_column("question_id").to_list())
        assert len(counts) == n_questions and set(counts.values()) == {1}, (model, counts)


def test_ten_models_on_two_gpus_take_turns(ray_cluster, toy_data, tmp_path):
    names = [f"m{i}" for i in range(10)]
    config = _config(tmp_path, [f"{n}=toy/{n}" for n in names], engine={"name": "dummy", "options": {"delay_s": 0.05}},
                     resources={"device": "gpu"})
    summary = driver.run(config, progress=False)
    assert summary.ok and summary.done == 10 * 4
    shards = _shards(config.out_dir)
    spans = _spans(shards)
    assert sorted(spans) == names
    assert all(len(entry["gpus"]) == 1 for entry in shards.values())
    assert all(len(gpus) == 1 for gpus, _, _ in spans.values())  # a model stays on one GPU
    # At most 2 models at any time (checked at every start), on different GPUs.
    for t in sorted(lo for _, lo, _ in spans.values()):
        live = [next(iter(g)) for g, lo, hi in spans.values() if lo <= t < hi]
        assert len(live) <= 2 and len(set(live)) == len(live), (t, live)
    # Per GPU the models follow one another: the next starts after the last shard of the one
    # before ended (its actor gave the GPU back then), and soon after (it was not held longer).
    for gpu in ("0", "1"):
        turns = sorted((lo, hi) for g, lo, hi in spans.values() if g == {gpu})
        assert len(turns) >= 2, f"GPU {gpu} ran {len(turns)} model(s)"
        for (_, end), (start, _) in zip(turns, turns[1:]):
            assert end <= start < end + HANDOVER_S, (gpu, turns)
    _rows_once(config.out_dir, names)
    _gpus_freed()


def test_model_that_cannot_load_frees_its_gpu(ray_cluster, toy_data, tmp_path):
    record = tmp_path / "failures.jsonl"
    names = ["broken", "g1", "g2", "g3", "g4"]
    engine = {"name": f"{THIS}:failing_factory",
              "options": {"broken": ["broken"], "record": str(record), "delay_s": 0.05}}
    config = _config(tmp_path, [f"{n}=toy/{n}" for n in names], engine=engine, resources={"device": "gpu"})
    summary = driver.run(config, progress=False)
    assert set(summary.load_errors) == {"broken"} and summary.load_errors["broken"].reason == CAUSE
    broken = {f"broken/{ds}/shard-{i:05d}" for ds in ("ToyA", "ToyB") for i in range(2)}
    assert set(summary.failed) == broken and summary.done == 4 * 4
    shards = _shards(config.out_dir)
    for key in broken:
        assert shards[key]["status"] == "failed"
        assert shards[key]["error"] == f"EngineStartError: model 'broken' could not be loaded: {CAUSE}"
        assert not (config.out_dir / f"{key}.parquet").exists()
    failures = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(failures) == 1 and len(failures[0]["gpus"]) == 1  # loaded once, on one GPU
    gpu, failed_at = failures[0]["gpus"][0], failures[0]["at"]
    spans = _spans(shards)
    assert sorted(spans) == names[1:]
    later = [m for m, (g, lo, _) in spans.items() if g == {gpu} and lo > failed_at]
    assert later, f"no model ran on GPU {gpu} after 'broken' failed there: {spans}"
    _rows_once(config.out_dir, names[1:])
    _gpus_freed()


def test_replicas_of_one_model_share_its_shards(ray_cluster, toy_data, tmp_path):
    config = _config(tmp_path, ["m=toy/m"], shard_size=2, engine={"name": "dummy", "options": {"delay_s": 0.1}},
                     resources={"device": "gpu", "replicas": 2})
    summary = driver.run(config, progress=False)
    assert summary.ok and summary.done == 6
    shards = _shards(config.out_dir)
    assert sorted(shards) == sorted(f"m/{ds}/shard-{i:05d}" for ds in ("ToyA", "ToyB") for i in range(3))
    assert all(entry["status"] == "done" for entry in shards.values())
    by_pid = Counter(entry["pid"] for entry in shards.values())
    assert len(by_pid) == 2, by_pid  # two actors, each ran some of the shards
    gpus = {entry["pid"]: tuple(entry["gpus"]) for entry in shards.values()}
    assert sorted(gpus.values()) == [("0",), ("1",)]  # one GPU each
    assert os.getpid() not in by_pid
    _rows_once(config.out_dir, ["m"])
    _gpus_freed()
