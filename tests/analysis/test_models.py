"""Pairing each variant with its own base, and model metadata (card, name, flags)."""

import pytest

from ray_bench.analysis.models import model_table, q_label, resolve_pairs, scoring_warnings
from ray_bench.errors import AnalysisError


def _card(base_name, base_path, method="rtn", scheme="w4a16"):
    return {"base_model": {"name": base_name, "path": base_path}, "method": method, "scheme": scheme}


def test_two_bases_paired_from_cards_by_path_then_by_name(tmp_path):
    settings = {
        "qwen": {"path": str(tmp_path / "qwen")},
        "llama": {"path": str(tmp_path / "llama")},
        # the card's base name differs from the run's name: matched by path
        "q4": {"path": "x", "quantization_card": _card("Qwen-0.5B", str(tmp_path / "qwen"))},
        # no matching path: matched by name
        "l8": {"path": "y", "quantization_card": _card("llama", "/elsewhere", "smoothquant-gptq", "w8a16")},
    }
    pairs = resolve_pairs(settings)
    assert pairs == {"q4": ("qwen", "card"), "l8": ("llama", "card")}
    table = {r["model"]: r for r in model_table(settings, pairs).iter_rows(named=True)}
    assert table["l8"]["q_label"] == "GPTQ W8A16 + SQ" and table["l8"]["smoothquant"]
    assert (table["l8"]["w_bits"], table["l8"]["a_bits"]) == (8, 16)
    assert table["qwen"]["role"] == "base" and table["q4"]["role"] == "variant"


def test_name_fallback_pair_flag_base_flag_and_controls():
    settings = {m: {"path": m} for m in ("qwen2.5-7b-instruct", "qwen2.5-7b-instruct-lc-smooth-rtn-w4a16",
                                         "other", "third", "qwen-vllm")}
    pairs = resolve_pairs(settings, pairs={"other": "third"}, controls={"qwen-vllm": "qwen2.5-7b-instruct"})
    assert pairs["qwen2.5-7b-instruct-lc-smooth-rtn-w4a16"] == ("qwen2.5-7b-instruct", "name")
    assert pairs["other"] == ("third", "pair") and pairs["qwen-vllm"] == ("qwen2.5-7b-instruct", "control")
    table = {r["model"]: r for r in model_table(settings, pairs).iter_rows(named=True)}
    assert table["qwen2.5-7b-instruct-lc-smooth-rtn-w4a16"]["q_label"] == "RTN W4A16 + SQ"
    assert table["qwen-vllm"]["role"] == "control" and table["qwen-vllm"]["q_label"] == "control"
    assert resolve_pairs({"a": {}, "b": {}}, base="a") == {"b": ("a", "base-option")}


def test_pairing_errors_name_the_model_and_the_next_step():
    with pytest.raises(AnalysisError, match="'nope' has no results") as info:
        resolve_pairs({"a": {}, "b": {}}, pairs={"nope": "a"})
    assert "Models in the results: a, b" in info.value.hint
    with pytest.raises(AnalysisError, match="no model could be paired"):
        resolve_pairs({"a": {}, "b": {}})
    with pytest.raises(AnalysisError, match="'b' is paired as a variant and also serves as a base"):
        resolve_pairs({"a": {}, "b": {}, "c": {}}, pairs={"b": "a", "c": "b"})


def test_q_labels_and_scoring_warnings():
    assert q_label("rtn", "w4a16", False) == "RTN W4A16" and q_label("awq", "w4a16", False) == "AWQ W4A16"
    settings = {"base": {"path": "b", "engine": "hf", "dtype": "bfloat16"},
                "v": {"path": "v", "engine": "vllm", "dtype": "bfloat16"}}
    warnings = scoring_warnings(model_table(settings, {"v": ("base", "pair")}))
    assert warnings == ["v was scored with engine='vllm' but its base base with engine='hf' "
                        "(its flips mix quantization with this)"]


def test_w8a8_activation_quantization_warnings():
    ct = "compressed-tensors fake quantization (int8 per-token scale absmax/127.5; ...)"
    settings = {
        "m": {"engine": "hf"},
        "m-rtn-w8a8": {"engine": "hf", "activation_quantization": ct},
        "m-gptq-w8a8": {"engine": "vllm", "activation_quantization": "int8 per-token dynamic, scale absmax/127"},
        "m-rtn-w4a16": {"engine": "vllm", "activation_quantization": "none"},
    }
    pairs = {name: ("m", "name") for name in settings if name != "m"}
    warnings = scoring_warnings(model_table(settings, pairs))
    fake = [w for w in warnings if "absmax/127, so" in w]
    assert len(fake) == 1 and fake[0].startswith("m-rtn-w8a8 (W8A8)")
    # The W4A16 variant's vLLM engine is not a W8A8 engine mix; the two W8A8 engines are.
    assert [w for w in warnings if w.startswith("W8A8 variants")] == [
        "W8A8 variants were scored with different engines (hf, vllm): the int8 GEMMs round differently "
        "(about 1e-3 nats per choice), so compare W8A8 variants scored by one engine"
    ]


def test_coverage_warnings_count_the_questions_left_out():
    import polars as pl

    from ray_bench.analysis.models import coverage_warnings

    results = pl.LazyFrame({
        "model": ["b"] * 5 + ["v"] * 3 + ["w"] * 5,
        "dataset": ["BBQ"] * 13,
        "question_id": [f"q{i}" for i in range(5)] + ["q0", "q1", "q9"] + [f"q{i}" for i in range(5)],
    })
    # v shares q0 and q1 with its base; w all five.
    paired = pl.DataFrame({"variant": ["v", "v"] + ["w"] * 5, "dataset": ["BBQ"] * 7})
    models = model_table({"b": {}, "v": {}, "w": {}}, {"v": ("b", "pair"), "w": ("b", "pair")})
    assert coverage_warnings(results, paired, models) == [
        "v vs b on BBQ: 2 question(s) paired; left out 3 of the base's 5 and 1 of the variant's 3 "
        "(not answered by the other model, an error row, or an open answer the judge did not label)"
    ]
