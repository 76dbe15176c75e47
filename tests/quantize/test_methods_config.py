"""Method/scheme registry, recipes, names and job config: no llmcompressor needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ray_bench.config import build_config, load_yaml
from ray_bench.errors import ConfigError, QuantizationError, UnknownNameError
from ray_bench.quantize import METHODS, SCHEMES, check_combination, supported_schemes, variant_name
from ray_bench.quantize.config import MethodOptions, QuantizeJobConfig, Variant
from ray_bench.quantize.methods import Method, build_recipe, get_method
from ray_bench.quantize.plan import expand

ROOT = Path(__file__).resolve().parents[2]


def test_registries_hold_the_issue_names():
    assert METHODS.names() == ["rtn", "gptq", "awq", "smoothquant-rtn", "smoothquant-gptq"]
    assert SCHEMES.names() == ["w4a16", "w8a16", "w8a8"]
    assert not get_method("rtn").needs_calibration
    assert all(get_method(m).needs_calibration for m in METHODS.names() if m != "rtn")


def test_every_builtin_pair_is_supported_by_llmcompressor():
    # llmcompressor 0.14 accepts all 15 pairs (AWQ + W8A8 included); none is refused.
    assert all(supported_schemes(m) == SCHEMES.names() for m in METHODS.names())


@pytest.mark.parametrize(
    ("method", "scheme", "match"),
    [("gtpq", "w4a16", "Did you mean 'gptq'"), ("awq", "w4a61", "Did you mean 'w4a16'"),
     ("smoothquant", "w8a8", "unknown quantization method")],
)
def test_unknown_names_give_closest_match_and_list(method, scheme, match):
    with pytest.raises(UnknownNameError, match=match) as info:
        check_combination(method, scheme)
    assert "Known quantization" in info.value.hint


def test_unsupported_pair_is_refused_with_reason(monkeypatch):
    fake = Method("fake", lambda s, o: [], True, "test", unsupported={"w8a8": "no activations here"})
    monkeypatch.setitem(METHODS._items, "fake", fake)
    with pytest.raises(QuantizationError, match="does not support scheme 'w8a8': no activations") as info:
        check_combination("fake", "w8a8")
    assert "w4a16, w8a16" in info.value.hint
    with pytest.raises(QuantizationError):
        Variant(method="fake", scheme="w8a8")


def test_registering_a_name_twice_is_refused():
    from ray_bench.quantize.methods import register_method

    with pytest.raises(ConfigError, match="registered twice"):
        register_method("rtn", needs_calibration=False, description="dup")(lambda s, o: [])


def _summary(method, scheme, **opts):
    return [(s.class_name, s.kwargs) for s in build_recipe(method, scheme, MethodOptions(**opts))]


def test_recipes_match_the_reference_study():
    assert _summary("rtn", "w4a16") == [
        ("QuantizationModifier", {"targets": ["Linear"], "scheme": "W4A16", "ignore": ["lm_head"]})
    ]
    assert _summary("gptq", "w8a8")[0][1]["dampening_frac"] == 0.01
    awq = _summary("awq", "w4a16")
    assert [c for c, _ in awq] == ["AWQModifier", "QuantizationModifier"]
    assert awq[1][1]["scheme"] == "W4A16_ASYM"  # AutoAWQ's zero_point=True convention
    assert _summary("awq", "w8a16")[1][1]["scheme"] == "W8A16"  # no asymmetric 8-bit preset
    sq = _summary("smoothquant-rtn", "w4a16", smoothing_strength=0.5)
    assert sq[0] == ("SmoothQuantModifier", {"smoothing_strength": 0.5})
    assert [c for c, _ in _summary("smoothquant-gptq", "w8a8")] == ["SmoothQuantModifier", "GPTQModifier"]


def test_recipe_specs_import_from_the_0_14_locations():
    targets = {s.target for m in METHODS.names() for s in build_recipe(m, "w4a16")}
    assert targets == {
        "llmcompressor.modifiers.quantization:QuantizationModifier",
        "llmcompressor.modifiers.gptq:GPTQModifier",
        "llmcompressor.modifiers.transform:AWQModifier",
        "llmcompressor.modifiers.transform:SmoothQuantModifier",
    }


def test_scheme_details():
    w8 = SCHEMES.get("w8a16")
    assert (w8.weight_strategy, w8.group_size, w8.symmetric) == ("group", 128, True)
    assert SCHEMES.get("w8a8").describe() == "int8 weights, per-channel, symmetric; int8 dynamic per-token activations"
    assert SCHEMES.get("w4a16").describe(symmetric=False) == "int4 weights, group 128, asymmetric"


def test_variant_name_convention():
    assert variant_name("qwen2.5-7b-instruct", "smoothquant-rtn", "W4A16") == "qwen2.5-7b-instruct-smoothquant-rtn-w4a16"


@pytest.mark.parametrize(
    ("opts", "match"),
    [({"smoothing_strength": 1.5}, "smoothing_strength"), ({"dampening_frac": 0}, "dampening_frac"),
     ({"typo": 1}, "typo")],
)
def test_method_options_validate(opts, match):
    with pytest.raises(Exception, match=match):
        MethodOptions(**opts)


def _job(**over):
    data = {"models": ["a=/m/a", "b=/m/b"], "variants": ["rtn:w4a16", "gptq:w8a8"], "out_dir": "/o"}
    data.update(over)
    return build_config(QuantizeJobConfig, data, "test")


def test_job_config_expands_models_times_variants():
    tasks = expand(_job())
    assert [t.name for t in tasks] == ["a-rtn-w4a16", "a-gptq-w8a8", "b-rtn-w4a16", "b-gptq-w8a8"]
    assert str(tasks[0].target) == "/o/a-rtn-w4a16"


@pytest.mark.parametrize(
    ("over", "match"),
    [({"models": ["a=/x", "a=/y"]}, "model names must be unique"),
     ({"variants": ["rtn:w4a16", "rtn:w4a16"]}, "variants must be unique"),
     ({"variants": ["rtn-w4a16"]}, "METHOD:SCHEME"),
     ({"resources": {"gpus_per_model": {"zz": 2}}}, "unknown models"),
     ({"resources": {"gpus_per_task": 0}}, "gpus_per_task"),
     ({"overwrite": True, "skip_existing": True}, "exclude each other"),
     ({"calibration": {"num_samples": 0}}, "num_samples"),
     ({"calibration": {"template": "no placeholder"}}, "template"),
     ({"extra_key": 1}, "extra_key")],
)
def test_job_config_refuses_bad_values(over, match):
    with pytest.raises(ConfigError, match=match):
        _job(**over)


def test_study_config_lists_the_reference_model_set():
    job = build_config(QuantizeJobConfig, load_yaml(ROOT / "jobs" / "study_models.yaml"), "study")
    assert len(job.models) == 10 and len(job.variants) == 5
    assert {(v.method, v.scheme) for v in job.variants} == {
        ("awq", "w4a16"), ("gptq", "w4a16"), ("rtn", "w4a16"), ("rtn", "w8a16"), ("smoothquant-rtn", "w4a16")
    }
    ids = {m.path for m in job.models}
    assert "meta-llama/Llama-3.1-8B-Instruct" in ids and "Qwen/Qwen2.5-14B-Instruct" in ids
    assert job.calibration.source == "neuralmagic/LLM_compression_calibration"
    assert (job.calibration.num_samples, job.calibration.max_seq_length) == (512, 6144)
    assert len(expand(job)) == 50


def test_import_is_light():
    code = (
        "import sys, ray_bench.quantize, ray_bench.quantize.card, ray_bench.cli.quantize;"
        "heavy = [m for m in ('torch', 'transformers', 'llmcompressor', 'ray', 'datasets') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
