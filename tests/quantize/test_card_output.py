"""The quantization card and atomic output directories (no llmcompressor needed)."""

from __future__ import annotations


import pytest

from ray_bench.errors import QuantizationError
from ray_bench.quantize import CARD_NAME, read_card
from ray_bench.quantize.card import scheme_details_from_config, summarize_card, write_card
from ray_bench.quantize.output import check_target, commit, is_complete, new_partial_dir


def test_card_file_name_is_fixed():
    assert CARD_NAME == "quantization_card.json"


@pytest.mark.parametrize("path", ["Qwen/Qwen2.5-0.5B-Instruct", "/definitely/not/here"])
def test_read_card_is_none_without_a_card(path):
    assert read_card(path) is None


def test_read_card_of_a_file_path_is_none(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    assert read_card(f) is None


def test_card_roundtrip_and_malformed(tmp_path):
    write_card(tmp_path, {"method": "rtn", "scheme": "w4a16"})
    assert read_card(tmp_path) == {"method": "rtn", "scheme": "w4a16"}
    assert read_card(str(tmp_path))["method"] == "rtn"
    (tmp_path / CARD_NAME).write_text("{broken")
    with pytest.raises(QuantizationError, match="not valid JSON"):
        read_card(tmp_path)
    (tmp_path / CARD_NAME).write_text("[1, 2]")
    with pytest.raises(QuantizationError, match="JSON object"):
        read_card(tmp_path)


def test_scheme_details_from_saved_config():
    config = {"quantization_config": {
        "quant_method": "compressed-tensors", "format": "pack-quantized", "ignore": ["lm_head"],
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": {
            "num_bits": 4, "type": "int", "symmetric": False, "strategy": "group", "group_size": 128}}}}}
    details = scheme_details_from_config(config)
    w = details["config_groups"]["group_0"]["weights"]
    assert (w["num_bits"], w["group_size"], w["symmetric"]) == (4, 128, False)
    assert details["config_groups"]["group_0"]["input_activations"] is None
    assert scheme_details_from_config({})["config_groups"] == {}


def test_summarize_card():
    card = {"method": "gptq", "scheme": "w4a16", "scheme_details": {"description": "int4"},
            "calibration": {"path": "/c.jsonl", "num_samples": 8, "seed": 0}, "wall_time_s": 1.25, "device": "cpu"}
    assert summarize_card(card) == "gptq w4a16: int4; 8 samples of /c.jsonl (seed 0); 1.2 s on cpu"


def _finished_tmp(target):
    tmp = new_partial_dir(target)
    (tmp / "config.json").write_text("{}")
    write_card(tmp, {"name": target.name})
    return tmp


def test_commit_publishes_only_complete_dirs(tmp_path):
    target = tmp_path / "m-rtn-w4a16"
    tmp = new_partial_dir(target)
    assert tmp.name.startswith(".m-rtn-w4a16.partial-") and not is_complete(tmp)
    with pytest.raises(QuantizationError, match="no card"):
        commit(tmp, target, overwrite=False)
    assert not target.exists()
    write_card(tmp, {"name": "m"})
    assert commit(tmp, target, overwrite=False) == target
    assert is_complete(target) and not tmp.exists()


def test_existing_complete_output_needs_overwrite(tmp_path):
    target = tmp_path / "m-rtn-w4a16"
    commit(_finished_tmp(target), target, overwrite=False)
    with pytest.raises(QuantizationError, match="already exists and is complete") as info:
        check_target(target, overwrite=False)
    assert "--overwrite" in info.value.hint
    tmp = _finished_tmp(target)
    with pytest.raises(QuantizationError):
        commit(tmp, target, overwrite=False)
    write_card(tmp, {"name": "second"})
    commit(tmp, target, overwrite=True)
    assert read_card(target) == {"name": "second"}
    assert [p.name for p in tmp_path.iterdir()] == ["m-rtn-w4a16"]  # old copy removed


def test_foreign_directory_is_not_replaced_silently(tmp_path):
    target = tmp_path / "m-rtn-w4a16"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(QuantizationError, match="not a ray-bench quantized checkpoint"):
        check_target(target, overwrite=False)
    check_target(target, overwrite=True)
