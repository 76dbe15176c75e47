"""Real llmcompressor runs on CPU: every method x scheme on a briefly trained tiny model.

Each variant is made once per session (cached), loaded back through transformers'
compressed-tensors support and scored in fp32; the scores are compared with the base.
"""

from __future__ import annotations

import json

import pytest

from ray_bench.quantize import METHODS, SCHEMES, quantize_model, read_card
from ray_bench.quantize.scoring import compare_scores, probe_requests, score_checkpoint

PAIRS = [(m, s) for m in METHODS.names() for s in SCHEMES.names()]


@pytest.fixture(scope="session")
def requests_():
    return probe_requests(12, seed=1)


@pytest.fixture(scope="session")
def base_scores(trained_tiny, requests_):
    return score_checkpoint(str(trained_tiny), requests_, via="plain")


@pytest.fixture(scope="session")
def variant(trained_tiny, calib, tmp_path_factory):
    """``variant(method, scheme) -> checkpoint path``, made at most once per session."""
    out = tmp_path_factory.mktemp("variants")
    made: dict[tuple[str, str], object] = {}

    def make(method: str, scheme: str):
        if (method, scheme) not in made:
            made[(method, scheme)] = quantize_model(trained_tiny, out, method, scheme, name="tiny", calibration=calib)
        return made[(method, scheme)]

    return make


@pytest.fixture(scope="session")
def scores(variant, requests_):
    cache: dict[tuple[str, str], list] = {}

    def get(method: str, scheme: str):
        if (method, scheme) not in cache:
            cache[(method, scheme)] = score_checkpoint(str(variant(method, scheme)), requests_, via="plain")
        return cache[(method, scheme)]

    return get


@pytest.mark.slow
@pytest.mark.parametrize(("method", "scheme"), PAIRS, ids=[f"{m}-{s}" for m, s in PAIRS])
def test_variant_loads_back_scores_and_differs_from_base(llmc, method, scheme, variant, scores, base_scores):
    path = variant(method, scheme)
    assert path.name == f"tiny-{method}-{scheme}"
    config = json.loads((path / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "compressed-tensors"
    cmp = compare_scores(base_scores, scores(method, scheme))
    assert cmp.max_abs_diff > 0, "quantized log-probs are identical to the base"
    assert cmp.rel_diff < 0.05, cmp


@pytest.mark.slow
@pytest.mark.parametrize("method", ["rtn", "gptq", "awq", "smoothquant-rtn"])
def test_w8a16_stays_closer_to_base_than_w4a16(llmc, method, scores, base_scores):
    w8 = compare_scores(base_scores, scores(method, "w8a16"))
    w4 = compare_scores(base_scores, scores(method, "w4a16"))
    assert w8.mean_abs_diff < w4.mean_abs_diff, (w8, w4)


@pytest.mark.slow
def test_card_records_recipe_scheme_calibration_versions(llmc, variant, calib):
    card = read_card(variant("awq", "w4a16"))
    assert (card["method"], card["scheme"], card["name"]) == ("awq", "w4a16", "tiny-awq-w4a16")
    details = card["scheme_details"]
    assert (details["group_size"], details["symmetric"], details["preset"]) == (128, False, "W4A16_ASYM")
    assert [r["modifier"] for r in card["recipe"]] == ["AWQModifier", "QuantizationModifier"]
    assert card["calibration"]["kind"] == "file" and card["calibration"]["num_samples"] == calib.num_samples
    assert card["seed"] == 0 and card["device"] == "cpu" and card["wall_time_s"] > 0
    assert card["versions"]["llmcompressor"] == "0.14.0.1"
    w8a8 = read_card(variant("smoothquant-gptq", "w8a8"))["scheme_details"]
    acts = w8a8["config_groups"]["group_0"]["input_activations"]
    assert (w8a8["strategy"], acts["strategy"], acts["dynamic"]) == ("channel", "token", True)


def test_rtn_needs_no_calibration_and_is_fast(llmc, tmp_path, monkeypatch):
    """The demo's path: RTN W4A16 of the untrained tiny base, no data, no network."""
    from ray_bench.demo.tiny import build_tiny_model
    from ray_bench.quantize import calibration

    monkeypatch.setattr(calibration, "load_calibration", lambda cfg: pytest.fail("RTN loaded calibration"))
    base = build_tiny_model(tmp_path / "tiny")
    path = quantize_model(base, tmp_path / "out")
    assert path == tmp_path / "out" / "tiny-rtn-w4a16"
    card = read_card(path)
    assert card["calibration"] is None and card["scheme_details"]["symmetric"] is True
    assert card["oneshot_time_s"] < 30


def test_existing_output_needs_overwrite_and_failures_leave_nothing(llmc, tmp_path, monkeypatch):
    from ray_bench.demo.tiny import build_tiny_model
    from ray_bench.errors import QuantizationError
    from ray_bench.quantize import api

    base = build_tiny_model(tmp_path / "tiny")
    first = quantize_model(base, tmp_path / "out", "rtn", "w8a8")
    stamp = read_card(first)["created_at"]
    with pytest.raises(QuantizationError, match="already exists"):
        quantize_model(base, tmp_path / "out", "rtn", "w8a8")

    def boom(path, card):
        raise KeyboardInterrupt  # an interruption just before the card is written

    monkeypatch.setattr(api, "write_card", boom)
    with pytest.raises(KeyboardInterrupt):
        quantize_model(base, tmp_path / "out", "rtn", "w8a8", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tiny-rtn-w8a8"]
    assert read_card(first)["created_at"] == stamp  # the complete output survived
    monkeypatch.undo()
    quantize_model(base, tmp_path / "out", "rtn", "w8a8", overwrite=True)
    assert read_card(first) is not None


def test_group_size_mismatch_is_a_clear_error(llmc, tmp_path):
    from ray_bench.demo.tiny import build_tiny_model
    from ray_bench.errors import QuantizationError

    base = build_tiny_model(tmp_path / "odd", hidden_size=128, intermediate_size=192)
    with pytest.raises(QuantizationError, match="divisible") as info:
        quantize_model(base, tmp_path / "out", "rtn", "w4a16")
    assert "multiples of 128" in info.value.hint
    assert not (tmp_path / "out" / "odd-rtn-w4a16").exists()


def test_missing_base_model_is_a_clear_error(llmc, tmp_path):
    from ray_bench.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="cannot load base model"):
        quantize_model(tmp_path / "nope", tmp_path / "out", "rtn", "w4a16")


def test_cpu_pin_memory_patch_is_scoped(llmc, monkeypatch):
    from llmcompressor.pipelines.cache import IntermediatesCache

    from ray_bench.quantize import patches

    original = IntermediatesCache.pin_memory
    with patches.cpu_pin_memory_workaround() as active:
        assert active and IntermediatesCache.pin_memory is not original
        assert IntermediatesCache.pin_memory(object(), 0) is None
    assert IntermediatesCache.pin_memory is original
    monkeypatch.setattr(patches, "accelerator_available", lambda: True)
    with patches.cpu_pin_memory_workaround() as active:
        assert not active and IntermediatesCache.pin_memory is original


@pytest.mark.slow
@pytest.mark.parametrize(("method", "scheme"), PAIRS, ids=[f"{m}-{s}" for m, s in PAIRS])
def test_hf_engine_scores_quantized_checkpoints(llmc, method, scheme, variant, scores, requests_):
    """The run stage's HF engine scores every variant like a plain transformers forward does.

    Weight-only schemes match to fp32 noise. W8A8 rounds every activation to int8 per
    token, so a last-bit difference from another summation order (packed rows vs one
    sequence) can move a value across a rounding step: allow that, not more. The engine
    is asked for transformers' own activation rule here, as the plain forward uses it (its
    default follows vLLM's kernels: tests/engines/test_hf_quant.py).
    """
    via_engine = score_checkpoint(
        str(variant(method, scheme)), requests_, via="hf", activation_quant="compressed-tensors"
    )
    cmp = compare_scores(scores(method, scheme), via_engine)
    tolerance = 1e-2 if scheme == "w8a8" else 1e-4
    assert cmp.max_abs_diff < tolerance and cmp.agreement == 1.0, (method, scheme, cmp)
