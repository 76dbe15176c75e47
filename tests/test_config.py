"""Config parsing: YAML first, flags override, nothing clamped."""

import pytest

from ray_bench.config import ModelSpec, RunConfig, build_config, merge_overrides
from ray_bench.errors import ConfigError


def test_flags_override_yaml_recursively():
    yaml_data = {"models": ["a=org/a"], "engine": {"name": "hf", "dtype": "float32", "options": {"x": 1}}}
    flags = {"models": None, "engine": {"name": None, "dtype": "bfloat16", "options": {"y": 2}}, "resources": {"device": None}}
    merged = merge_overrides(yaml_data, flags)
    assert merged == {"models": ["a=org/a"], "engine": {"name": "hf", "dtype": "bfloat16", "options": {"x": 1, "y": 2}}}


def test_model_spec_parsing():
    assert ModelSpec.parse("q=/m/x-rtn") == ModelSpec(name="q", path="/m/x-rtn")
    assert ModelSpec.parse("/models/base/").name == "base"
    with pytest.raises(ConfigError, match="model name"):
        ModelSpec.parse("bad name=/x")
    with pytest.raises(ConfigError, match="empty path"):
        ModelSpec.parse("name=")


def test_duplicate_model_names_and_bad_values_are_refused():
    base = {"datasets": ["BBQ"], "data_dir": "d", "out_dir": "o"}
    with pytest.raises(ConfigError, match="unique"):
        build_config(RunConfig, {**base, "models": ["a=org/x", "a=org/y"]}, "t")
    with pytest.raises(ConfigError, match="temperature"):
        build_config(RunConfig, {**base, "models": ["a=org/x"], "engine": {"temperature": -1}}, "t")


def test_batch_budget_defaults_by_device_and_explicit_value_wins():
    from ray_bench.config import CPU_BATCH_TOKENS, GPU_BATCH_TOKENS, EngineConfig

    assert EngineConfig().batch_budget("cpu") == CPU_BATCH_TOKENS == 2048
    assert EngineConfig().batch_budget("cuda") == GPU_BATCH_TOKENS == 16384
    assert EngineConfig(max_batch_tokens=500).batch_budget("cuda") == 500


def test_reference_decoding_preset_matches_the_reference_notes():
    from ray_bench.config import EngineConfig
    from ray_bench.engines.base import Decoding

    engine = EngineConfig(reference_decoding=True)
    # notes reference-benchmark.md 3.1: T=1, 512 tokens, seed 1 for every request; FMT10K T=0.7, 150 tokens.
    assert engine.decoding("CEB-Continuation-S") == Decoding(1.0, 1.0, 512, 1, seed_per_question=False)
    assert engine.decoding("FMT10K-IM-T") == Decoding(0.7, 1.0, 150, 1, seed_per_question=False)
    assert EngineConfig().decoding("FMT10K-IM-T") == Decoding(0.0, 1.0, 256, 0)  # greedy by default


@pytest.mark.parametrize("field", ["temperature", "max_new_tokens", "seed", "top_p"])
def test_reference_decoding_refuses_explicit_decoding_fields(field):
    from ray_bench.config import EngineConfig

    with pytest.raises(ValueError, match=f"do not also set {field}"):
        EngineConfig(reference_decoding=True, **{field: 0.5 if field in ("temperature", "top_p") else 5})


def test_judge_engine_gets_the_reference_length_unless_set():
    from ray_bench.config import JudgeOptions

    assert JudgeOptions().engine.max_new_tokens == 100
    assert JudgeOptions.model_validate({"engine": {"name": "vllm"}}).engine.max_new_tokens == 100
    assert JudgeOptions.model_validate({"engine": {"max_new_tokens": 20}}).engine.max_new_tokens == 20
    judge = JudgeOptions.model_validate({"model": "lg=org/guard"})
    assert (judge.model.name, judge.model.path, judge.judge_turns) == ("lg", "org/guard", "all")
    with pytest.raises(ValueError, match="judge_turns"):
        JudgeOptions.model_validate({"judge_turns": "first"})


def test_relative_paths_inside_a_ray_job_need_a_root(monkeypatch, tmp_path):
    from ray_bench.config import check_job_paths
    from ray_bench.errors import ConfigError

    paths = {"data_dir": "data", "out_dir": str(tmp_path / "out"), "model 'm'": "./models/m"}
    check_job_paths(paths, None)  # outside a job: the working directory is the user's
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")  # what Ray's job supervisor sets
    with pytest.raises(ConfigError, match="data_dir 'data' is relative inside a Ray job") as info:
        check_job_paths(paths, None)
    assert "--root" in info.value.hint
    with pytest.raises(ConfigError, match="model 'm' './models/m'"):
        check_job_paths({"model 'm'": "./models/m", "other": "org/name"}, None)
    check_job_paths({"model 'h'": "org/name", "out_dir": "/abs/out"}, None)  # hub ids and absolute paths pass
    check_job_paths(paths, tmp_path)  # resolved against a named root
