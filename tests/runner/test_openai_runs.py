"""Runs with the API engine: refused before Ray when they cannot work, CPU actors and served names when they can."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from ray_bench.config import JudgeOptions, RunConfig
from ray_bench.errors import ConfigError
from ray_bench.runner.driver import check_scoring, validate_models
from ray_bench.schema import question_schema
from tests.runner.conftest import make_questions, start_local_ray


def _config(tmp_path, model="gpt=gpt-4o-mini", engine="openai", **extra):
    options = extra.pop("options", {"api_key_env": None})
    return RunConfig(models=[model], datasets=["BiasLens-GenWhy"], data_dir=tmp_path / "data", out_dir=tmp_path / "out",
                     engine={"name": engine, "options": options}, **extra)


def _open_questions(n: int = 4) -> pa.Table:
    rows = [{"question_id": f"gw/{i}", "dataset": "BiasLens-GenWhy", "subset": "BiasLens-GenWhy", "axis": "age",
             "kind": "open", "prompt": f"ok why {i}?", "turns": ["ok first", f"ok why {i}?"] if i == 0 else None,
             "choices": None, "choice_labels": None, "group": None, "context_condition": None, "answer_index": None,
             "source_fields": "{}"} for i in range(n)]
    return pa.Table.from_pylist(rows, schema=question_schema())


def test_closed_datasets_and_a_scoring_judge_are_refused_before_anything_starts(tmp_path):
    config = _config(tmp_path)
    questions = {"BBQ": make_questions(3, 0, "BBQ"), "BiasLens-GenWhy": _open_questions(), "CEB-Adult": make_questions(2, 0)}
    with pytest.raises(ConfigError, match="cannot answer the closed questions of BBQ, CEB-Adult: .*log-probabilit") as info:
        check_scoring(config.engine, questions)
    assert "--engine hf" in info.value.hint and "--dataset" in info.value.hint
    check_scoring(config.engine, {"BiasLens-GenWhy": _open_questions()})
    check_scoring(_config(tmp_path, engine="dummy").engine, questions)  # engines that score are not concerned
    judge = JudgeOptions(model="guard=gpt-4o-mini", engine={"name": "openai", "options": {"api_key_env": None}})
    with pytest.raises(ConfigError, match="p_unsafe") as info:
        check_scoring(config.engine, {}, judge)
    assert "score: false" in info.value.hint
    check_scoring(config.engine, {}, judge.model_copy(update={"score": False}))


def test_a_served_name_is_not_checked_as_a_path_and_no_gpu_is_asked_for(tmp_path):
    validate_models(_config(tmp_path, model="llama=/models/Llama-3-8B"))  # vllm serve's default served name
    with pytest.raises(ConfigError, match="does not exist"):
        validate_models(_config(tmp_path, model="llama=/models/Llama-3-8B", engine="dummy"))
    with pytest.raises(ConfigError, match="runs on no GPU"):
        validate_models(_config(tmp_path, resources={"device": "gpu"}))
    with pytest.raises(ConfigError, match="revision"):
        validate_models(RunConfig(models=[{"name": "g", "path": "gpt-4o", "revision": "main"}], datasets=["BBQ"],
                                  data_dir=tmp_path / "d", out_dir=tmp_path / "o",
                                  engine={"name": "openai", "options": {"api_key_env": None}}))


def test_a_served_model_gets_cpu_actors_and_no_checkpoint_digest(tmp_path):
    from ray_bench.runner.session import actor_options
    from ray_bench.stages.answer import AnswerStage

    checkpoint = tmp_path / "ckpt"  # a real-looking local directory served by name
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    questions = {"BiasLens-GenWhy": _open_questions()}
    served = AnswerStage(_config(tmp_path, model=f"m={checkpoint}"), questions)
    local = AnswerStage(_config(tmp_path, model=f"m={checkpoint}", engine="dummy"), questions)
    assert served.resources.device == "cpu" and local.resources.device == "auto"
    assert actor_options(served.resources, "gpu") == {"max_restarts": 3, "max_task_retries": -1, "num_cpus": 1.0,
                                                      "num_gpus": 0}
    assert actor_options(local.resources, "gpu")["num_gpus"] == 1
    job = served.initial_jobs()[0][0]
    assert served.made_by(job)["checkpoint"] is None and local.made_by(job)["checkpoint"] is not None
    assert served.made_by(job)["engine_options"] == {}  # api_key_env is operational
    from ray_bench.stages.judge import JudgeStage

    judge = JudgeOptions(model="guard=gpt-4o-mini", engine={"name": "openai"}, score=False)
    assert JudgeStage(judge, tmp_path / "out", questions, []).resources.device == "cpu"
    assert JudgeStage(JudgeOptions(), tmp_path / "out", questions, []).resources.device == "auto"


@pytest.mark.slow
def test_a_run_on_a_gpu_cluster_answers_on_cpu_actors_through_the_server(tmp_path, monkeypatch):
    from tests.engines.test_openai_faults import KEY_ENV, SENTINEL_KEY, FaultServer

    from ray_bench.runner import driver

    server = FaultServer()
    server.thread.start()
    assert server.ready.wait(20)
    monkeypatch.setenv(KEY_ENV, SENTINEL_KEY)  # the actors inherit it; nothing else carries it
    monkeypatch.setattr(driver, "load_questions", lambda config: {"BiasLens-GenWhy": _open_questions()})
    ray = start_local_ray(num_cpus=2, num_gpus=1, tag="rboa")
    try:
        config = _config(tmp_path, model="llama=/models/served-llama", shard_size=2,
                         options={"base_url": f"http://127.0.0.1:{server.port}/v1", "api_key_env": KEY_ENV})
        summary = driver.run(config, progress=False)
        again = driver.run(config, progress=False)
    finally:
        ray.shutdown()
        server.loop.call_soon_threadsafe(server.loop.stop)
    assert summary.ok and summary.done == 2 and (again.done, again.skipped) == (0, 2)
    import pyarrow.parquet as pq

    rows = pq.read_table(tmp_path / "out" / "llama" / "BiasLens-GenWhy").to_pylist()
    by_id = {r["question_id"]: r for r in rows}
    assert by_id["gw/0"]["responses"] == ["reply to ok first", "reply to ok why 0?"]
    assert [by_id[f"gw/{i}"]["response"] for i in (1, 2, 3)] == [f"reply to ok why {i}?" for i in (1, 2, 3)]
    assert server.seen["ok why 1?"][0]["auth"] == f"Bearer {SENTINEL_KEY}"
    manifest = (tmp_path / "out" / "manifest.json").read_text()
    assert SENTINEL_KEY not in manifest
    data = json.loads(manifest)
    assert all(entry["gpus"] == [] for entry in data["shards"].values())  # no GPU held by an API actor
    assert data["models"]["llama"]["engine"]["extra"]["base_url"] == config.engine.options["base_url"]
