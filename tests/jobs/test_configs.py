"""The shipped run configs and cluster.yaml validate offline."""

import copy
import json
import os
from pathlib import Path

import pytest
import yaml

from ray_bench.config import RunConfig, build_config, load_yaml
from ray_bench.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["example_run.yaml", "local_cpu.yaml"])
def test_run_configs_validate(name):
    config = build_config(RunConfig, load_yaml(ROOT / "jobs" / name), name)
    assert config.models and len({m.name for m in config.models}) == len(config.models)


def test_judge_config_validates():
    from ray_bench.config import JudgeConfig

    config = build_config(JudgeConfig, load_yaml(ROOT / "jobs" / "judge.yaml"), "judge.yaml")
    assert config.judge.model.path == "meta-llama/Llama-Guard-3-8B" and config.judge.engine.max_new_tokens == 100
    assert config.judge.engine.temperature == 0


def test_unknown_key_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [a=x/y]\ndatasets: [BBQ]\ndata_dir: d\nout_dir: o\nshard_sise: 5\n")
    with pytest.raises(ConfigError, match="shard_sise"):
        build_config(RunConfig, load_yaml(bad), "bad.yaml")


def test_cluster_yaml_passes_ray_schema():
    jsonschema = pytest.importorskip("jsonschema")
    import ray.autoscaler

    cfg = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(copy.deepcopy(cfg), schema)
    gpu = cfg["available_node_types"]["worker.gpu.l4"]
    assert gpu["min_workers"] == 0 and gpu["resources"]["GPU"] == 1
    assert os.access(ROOT / "jobs" / "submit.sh", os.X_OK)
