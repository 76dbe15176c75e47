"""W8A8 activations in the HF engine: the kernels' per-token int8 rule against naive references."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from ray_bench.engines.batching import check_hf_options
from ray_bench.errors import ConfigError

torch = pytest.importorskip("torch")
from ray_bench.engines import hf_quant  # noqa: E402  (needs torch only when called)

HAVE_LLMC = importlib.util.find_spec("llmcompressor") is not None
NO_LLMC = "llmcompressor is not installed (pip install -e '.[quantize]'): no W8A8 checkpoint can be written"


def naive_per_token(x, denom: float):
    """Per row (last dim), in float32 arithmetic one element at a time:
    scale = max|x| / denom, q = round-half-even(x / scale) clamped to [-128, 127], q * scale."""
    rows = np.asarray(x, dtype=np.float32).reshape(-1, x.shape[-1])
    out = np.zeros_like(rows)
    for r, row in enumerate(rows):
        absmax = np.float32(0.0)
        for v in row:
            absmax = max(absmax, np.float32(abs(v)))
        if absmax == 0:
            continue  # an all-zero token stays zero
        scale = np.float32(absmax / np.float32(denom))
        for c, v in enumerate(row):
            q = round(float(np.float32(v / scale)))  # Python's round: half to even
            q = min(127, max(-128, q))
            out[r, c] = np.float32(np.float32(q) * scale)
    return torch.from_numpy(out.reshape(x.shape))


# ---------------------------------------------------------------- kernel_int8_per_token


def test_kernel_rule_matches_naive_loop_on_random_tensors():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 128, generator=gen) * torch.rand(2, 5, 1, generator=gen) * 4
    got = hf_quant.kernel_int8_per_token(x)
    want = naive_per_token(x.numpy(), 127.0)
    assert got.dtype == torch.float32 and got.shape == x.shape
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    # the rule really quantizes: at most 255 distinct levels per token, and not the identity
    assert all(len(set(row.tolist())) <= 255 for row in got.reshape(-1, 128))
    assert not torch.equal(got, x)


def test_exact_halves_round_to_even():
    x = torch.tensor([[127.0, 0.5, 1.5, 2.5, -0.5, -2.5]])  # scale 127/127 = 1
    got = hf_quant.kernel_int8_per_token(x)
    assert got.tolist() == [[127.0, 0.0, 2.0, 2.0, -0.0, -2.0]]
    assert naive_per_token(x.numpy(), 127.0).tolist() == got.tolist()


def test_all_zero_token_stays_zero():
    x = torch.zeros(3, 8)
    x[1] = torch.linspace(-1, 1, 8)
    got = hf_quant.kernel_int8_per_token(x)
    assert not torch.isnan(got).any()
    assert torch.equal(got[0], torch.zeros(8)) and torch.equal(got[2], torch.zeros(8))
    torch.testing.assert_close(got[1], naive_per_token(x[1:2].numpy(), 127.0)[0], rtol=0, atol=1e-6)


def test_result_keeps_the_input_dtype():
    x = torch.randn(2, 16, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    got = hf_quant.kernel_int8_per_token(x)
    assert got.dtype == torch.bfloat16
    want = naive_per_token(x.float().numpy(), 127.0).to(torch.bfloat16)
    assert torch.equal(got, want)


def test_unknown_activation_quant_mode_is_refused():
    with pytest.raises(ConfigError, match="activation_quant") as info:
        check_hf_options({"activation_quant": "bogus"})
    assert "kernel" in info.value.message and "compressed-tensors" in info.value.message
    for mode in hf_quant.ACTIVATION_QUANT_MODES:
        check_hf_options({"activation_quant": mode})


# ---------------------------------------------------------------- a W8A8 checkpoint in the HF engine


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    pytest.importorskip("transformers")
    from ray_bench.demo.tiny import build_tiny_model

    base = build_tiny_model(tmp_path_factory.mktemp("hfq") / "base", arch="qwen2")
    return base, tmp_path_factory.mktemp("hfq-out")


@pytest.fixture(scope="module")
def w8a8_dir(tiny_dirs):
    if not HAVE_LLMC:
        pytest.skip(NO_LLMC)
    from ray_bench.quantize.api import quantize_model

    base, out = tiny_dirs
    return quantize_model(base, out, "rtn", "w8a8", name="tiny")


def _engine(path, **options):
    from ray_bench.config import EngineConfig, ModelSpec
    from ray_bench.engines.base import create_engine

    return create_engine(ModelSpec(name="t", path=str(path)), EngineConfig(name="hf", dtype="float32", options=options))


def _input():
    return torch.randn(1, 4, 128, generator=torch.Generator().manual_seed(2)) * 3


def test_unquantized_model_has_no_activation_quantization(tiny_dirs):
    engine = _engine(tiny_dirs[0])
    try:
        assert engine.info().extra["activation_quantization"] == "none"
    finally:
        engine.close()


def test_w8a8_linear_follows_the_kernel_rule(w8a8_dir):
    engine = _engine(w8a8_dir)
    try:
        assert engine.info().extra["activation_quantization"] == hf_quant.KERNEL_DESCRIPTION
        lin = engine.model.model.layers[0].self_attn.q_proj
        assert lin.bias is not None
        weight = lin.weight.detach()
        # dequantized: float, and on the int8 grid of its per-channel scale
        assert weight.dtype == torch.float32
        steps = weight / lin.weight_scale.detach()
        assert torch.allclose(steps, steps.round(), atol=1e-3)
        assert -128 <= steps.round().min() and steps.round().max() <= 127  # int8 range
        x = _input()
        with torch.no_grad():
            got = lin(x)
        want = naive_per_token(x.numpy(), 127.0) @ weight.T + lin.bias.detach()
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
        other = naive_per_token(x.numpy(), 127.5) @ weight.T + lin.bias.detach()
        assert (got - other).abs().max() > 1e-4  # the two rules are distinguishable here
    finally:
        engine.close()


def test_w8a8_linear_in_compressed_tensors_mode(w8a8_dir):
    engine = _engine(w8a8_dir, activation_quant="compressed-tensors")
    try:
        assert engine.info().extra["activation_quantization"] == hf_quant.CT_DESCRIPTION
        model = engine.model
        lin = model.model.layers[0].self_attn.q_proj
        # still compressed here: dequantize by hand, int8 weight times per-channel scale
        assert lin.weight.dtype == torch.int8
        weight = lin.weight.detach().to(torch.float32) * lin.weight_scale.detach()
        with torch.no_grad():
            model(input_ids=torch.zeros((1, 1), dtype=torch.long))  # decompresses on first forward
            torch.testing.assert_close(lin.weight.detach(), weight, rtol=0, atol=1e-6)
            x = _input()
            got = lin(x)
        want = naive_per_token(x.numpy(), 127.5) @ weight.T + lin.bias.detach()
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
        kernel = naive_per_token(x.numpy(), 127.0) @ weight.T + lin.bias.detach()
        assert (got - kernel).abs().max() > 1e-4
    finally:
        engine.close()


def test_kernel_rule_changes_only_quantized_inputs(w8a8_dir):
    """The hook replaces compressed-tensors' input fake quantization; modules left out are untouched."""
    engine = _engine(w8a8_dir)
    try:
        lm_head = engine.model.lm_head  # ignored by the recipe
        assert getattr(getattr(lm_head, "quantization_scheme", None), "input_activations", None) is None
        assert not lm_head._forward_pre_hooks
        x = torch.randn(1, 2, 128, generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            got = lm_head(x)
        want = x @ lm_head.weight.detach().T
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
        assert math.isfinite(float(got.abs().max()))
    finally:
        engine.close()
