"""A model whose engine cannot start: tried once, its shards all fail with the cause, others go on."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

from ray_bench.config import EngineConfig, ModelSpec, RunConfig
from ray_bench.errors import EngineError, EngineStartError, ModelLoadError
from ray_bench.engines.base import Decoding
from ray_bench.runner.worker import ModelWorker
from ray_bench.stages.answer import AnswerTask
from tests.runner.conftest import make_questions, start_local_ray

COUNTER_ENV = "RAY_BENCH_TEST_FACTORY_CALLS"
CAUSE = "no kernel for uint8b128"
HINT = "use the hf engine"
THIS = "tests.runner.test_engine_start_errors"
TASK = AnswerTask("m", Decoding())


def _record(path: str | os.PathLike, name: str) -> None:
    with open(path, "a") as f:
        f.write(name + "\n")


def _calls(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def failing_factory(model: ModelSpec, config: EngineConfig):
    """An engine factory that always fails like a checkpoint vLLM cannot load."""
    _record(os.environ[COUNTER_ENV], model.name)
    raise ModelLoadError(CAUSE, hint=HINT)


def crashing_factory(model: ModelSpec, config: EngineConfig):
    """Fails with a non-ray-bench exception."""
    _record(os.environ[COUNTER_ENV], model.name)
    raise RuntimeError("segfault-ish")


def broken_or_dummy_factory(model: ModelSpec, config: EngineConfig):
    """Fails for the model named ``broken``, else the dummy engine; calls go to ``options.counter``."""
    from ray_bench.engines.dummy import DummyEngine

    counter = config.options["counter"]
    _record(counter, model.name)
    if model.name == "broken":
        raise ModelLoadError(CAUSE, hint=HINT)

    class ClosingEngine(DummyEngine):
        def close(self) -> None:  # the driver must close engines before it kills the actors
            _record(counter, f"close:{model.name}")
            super().close()

    return ClosingEngine(model, config.model_copy(update={"options": {}}))


# ---------------------------------------------------------------- the error itself


def test_engine_start_error_survives_pickle():
    error = EngineStartError("q8", CAUSE, HINT)
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is EngineStartError
    assert (back.model, back.reason, back.hint) == ("q8", CAUSE, HINT)
    assert back.message == str(back) == f"model 'q8' could not be loaded: {CAUSE}"


def test_engine_start_error_without_hint_keeps_the_default():
    back = pickle.loads(pickle.dumps(EngineStartError("m", "boom")))
    assert back.hint == EngineError.default_hint and back.reason == "boom"


# ---------------------------------------------------------------- ModelWorker without Ray


@pytest.fixture
def counter(tmp_path, monkeypatch):
    path = tmp_path / "calls.txt"
    monkeypatch.setenv(COUNTER_ENV, str(path))
    return path


def test_failed_engine_is_created_once_and_every_shard_gets_the_error(counter):
    worker = ModelWorker(ModelSpec(name="q8", path="org/q8"), EngineConfig(name=f"{THIS}:failing_factory"))
    table = make_questions(3, 1)
    errors = []
    for _ in range(3):
        with pytest.raises(EngineStartError) as info:
            worker.run_shard(TASK, table)
        errors.append(info.value)
    assert _calls(counter) == ["q8"]  # tried once
    for error in errors:
        assert error.message == f"model 'q8' could not be loaded: {CAUSE}"
        assert error.hint == HINT and error.model == "q8" and error.reason == CAUSE
    assert isinstance(errors[0].__cause__, ModelLoadError)
    with pytest.raises(EngineStartError, match=CAUSE):
        worker.describe()
    assert _calls(counter) == ["q8"]
    assert worker.close() is False  # no engine to close


def test_foreign_exception_is_named_in_the_cause(counter):
    worker = ModelWorker(ModelSpec(name="m", path="org/m"), EngineConfig(name=f"{THIS}:crashing_factory"))
    for _ in range(2):
        with pytest.raises(EngineStartError) as info:
            worker.run_shard(TASK, make_questions(1, 0))
    assert info.value.reason == "RuntimeError: segfault-ish"
    assert info.value.hint == EngineError.default_hint
    assert _calls(counter) == ["m"]


# ---------------------------------------------------------------- through Ray


@pytest.fixture(scope="module")
def ray_cluster():
    ray = start_local_ray(num_cpus=2, tag="rbe", object_store_mib=128)
    yield
    ray.shutdown()


MODELS = ["good=toy/good", "broken=toy/broken"]


def _shard_keys(model: str) -> set[str]:
    return {f"{model}/{ds}/shard-{i:05d}" for ds in ("ToyA", "ToyB") for i in range(3)}


def _check_manifest(out: Path) -> None:
    shards = json.loads((out / "manifest.json").read_text())["shards"]
    assert set(shards) == _shard_keys("good") | _shard_keys("broken")
    for key in _shard_keys("good"):
        assert shards[key]["status"] == "done", shards[key]
        assert (out / f"{key}.parquet").is_file()
    for key in _shard_keys("broken"):
        assert shards[key]["status"] == "failed", shards[key]
        assert shards[key]["error"] == f"EngineStartError: model 'broken' could not be loaded: {CAUSE}"
        assert not (out / f"{key}.parquet").exists()


@pytest.mark.slow
def test_run_fails_only_the_broken_model(ray_cluster, toy_data, tmp_path):
    from ray_bench.runner import run

    counter = tmp_path / "calls.txt"
    config = RunConfig(
        models=MODELS, datasets=["ToyA", "ToyB"], data_dir=tmp_path / "data", out_dir=tmp_path / "out",
        engine={"name": f"{THIS}:broken_or_dummy_factory", "options": {"counter": str(counter)}},
        resources={"device": "cpu", "cpus_per_worker": 0.5}, shard_size=2,
    )
    summary = run(config, progress=False)
    assert sorted(_calls(counter)) == ["broken", "close:good", "good"]  # each engine created once, closed
    assert summary.done == 6 and not summary.ok
    assert set(summary.failed) == _shard_keys("broken")
    assert set(summary.load_errors) == {"broken"}
    error = summary.load_errors["broken"]
    assert (error.reason, error.hint) == (CAUSE, HINT)
    _check_manifest(config.out_dir)


@pytest.mark.slow
def test_cli_reports_the_load_error_once(ray_cluster, toy_data, tmp_path, capsys):
    from ray_bench.cli.main import main

    counter = tmp_path / "calls.txt"
    yaml_config = tmp_path / "run.yaml"
    yaml_config.write_text(json.dumps({"resources": {"cpus_per_worker": 0.5}}))  # JSON is YAML
    argv = ["run", "--config", str(yaml_config), "--dataset", "ToyA", "--dataset", "ToyB",
            "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--shard-size", "2",
            "--device", "cpu", "--engine", f"{THIS}:broken_or_dummy_factory",
            "--engine-option", f"counter={counter}", "--quiet"]
    for model in MODELS:
        argv += ["--model", model]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.splitlines()
    errors = [line for line in err if line.startswith("Error:")]
    hints = [line for line in err if line.startswith("Hint:")]
    assert len(errors) == 1 and len(hints) == 1, err
    assert "could not be loaded" in errors[0] and CAUSE in errors[0] and "'broken'" in errors[0]
    assert HINT in hints[0]
    assert sorted(_calls(counter)) == ["broken", "close:good", "good"]
    _check_manifest(tmp_path / "out")
