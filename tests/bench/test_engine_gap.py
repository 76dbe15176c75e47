"""The engine-gap benchmark's arithmetic and planning, on hand-built scores with known answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from ray_bench.bench.engine_gap import compare_runs, compare_scores, plan_checkpoints
from ray_bench.bench.quantized_set import QuantizedSet
from ray_bench.engines.base import ChoiceScores


def _scores(*rows: tuple[float, ...], counts: tuple[int, ...] | None = None) -> list[ChoiceScores]:
    return [ChoiceScores(f"q{i}", row, counts or tuple(1 for _ in row)) for i, row in enumerate(rows)]


# Two questions, two choices each. Differences worked out by hand in the comments.
BASE = _scores((-1.0, -2.0), (-3.0, -1.0))
HF = _scores((-1.5, -2.0), (-3.0, -1.1))  # |HF - base|: 0.5, 0, 0, 0.1 -> max 0.5, mean 0.15
VLLM = _scores((-1.5, -2.25), (-3.0, -1.15))  # |vLLM - HF|: 0, 0.25, 0, 0.05 -> max 0.25, mean 0.075
HF_CT = _scores((-1.0, -2.25), (-3.5, -1.15))  # |vLLM - HF-ct|: 0.5, 0, 0.5, 0 -> max 0.5, mean 0.25
VLLM_BASE = _scores((-1.0, -2.0), (-3.0, -1.0))  # |vLLM - vLLM(base)|: 0.5, 0.25, 0, 0.15


def test_gap_effect_and_ratios_by_hand() -> None:
    out = compare_scores(HF, HF_CT, VLLM, BASE, VLLM_BASE)
    assert out["questions"] == 2 and out["choices"] == 4 and out["failed_questions"] == 0
    assert out["engine_gap"]["max"] == pytest.approx(0.25) and out["engine_gap"]["mean"] == pytest.approx(0.075)
    assert out["ct_gap"]["max"] == pytest.approx(0.5) and out["ct_gap"]["mean"] == pytest.approx(0.25)
    assert out["quant_effect"]["max"] == pytest.approx(0.5) and out["quant_effect"]["mean"] == pytest.approx(0.15)
    assert out["vllm_effect"]["max"] == pytest.approx(0.5) and out["vllm_effect"]["mean"] == pytest.approx(0.225)
    assert out["gap_over_effect"]["max"] == pytest.approx(0.5)  # 0.25 / 0.5
    assert out["gap_over_effect"]["mean"] == pytest.approx(0.5)  # 0.075 / 0.15
    assert out["ct_gap_over_effect"]["max"] == pytest.approx(1.0)  # 0.5 / 0.5
    assert out["ct_gap_over_effect"]["mean"] == pytest.approx(0.25 / 0.15)
    assert out["token_counts_equal"] is True


def test_prediction_agreement_uses_the_per_token_mean() -> None:
    # q0: by the sums both would pick choice 0, but per token (3 tokens for choice 1) the
    # means are HF -1.5 vs -0.75 and vLLM -2.0 vs -0.75: both pick choice 1.
    hf = [ChoiceScores("q0", (-1.5, -2.25), (1, 3)), ChoiceScores("q1", (-1.0, -2.0), (1, 1))]
    vllm = [ChoiceScores("q0", (-2.0, -2.25), (1, 3)), ChoiceScores("q1", (-1.0, -2.0), (1, 1))]
    assert compare_scores(hf, hf, vllm)["prediction_agreement_vllm_hf"] == 1.0
    vllm[1] = ChoiceScores("q1", (-3.0, -2.0), (1, 1))  # now picks choice 1, HF choice 0
    assert compare_scores(hf, hf, vllm)["prediction_agreement_vllm_hf"] == 0.5


def test_base_row_has_no_effect_and_zero_effect_gives_no_ratio() -> None:
    out = compare_scores(BASE, BASE, VLLM_BASE)
    assert "quant_effect" not in out and out["engine_gap"] == {"max": 0.0, "mean": 0.0}
    same = compare_scores(BASE, BASE, VLLM, BASE)
    assert same["quant_effect"] == {"max": 0.0, "mean": 0.0}
    assert same["gap_over_effect"] == {"max": None, "mean": None}


def test_failed_questions_are_left_out_everywhere() -> None:
    vllm = [VLLM[0], ChoiceScores("q1", error="too long")]
    out = compare_scores(HF, HF_CT, vllm, BASE)
    assert out["questions"] == 1 and out["choices"] == 2 and out["failed_questions"] == 1
    assert out["engine_gap"]["max"] == pytest.approx(0.25) and out["engine_gap"]["mean"] == pytest.approx(0.125)
    assert out["quant_effect"]["mean"] == pytest.approx(0.25)  # (0.5 + 0) / 2, q1 left out here too


def test_misaligned_runs_are_refused() -> None:
    with pytest.raises(ValueError, match="same questions"):
        compare_scores(HF, HF_CT, list(reversed(VLLM)))
    with pytest.raises(ValueError, match="choice counts"):
        compare_scores(HF, HF_CT, _scores((-1.0,), (-1.0, -2.0)))


def test_compare_runs_pools_datasets_and_keeps_each() -> None:
    runs = {"hf": {"A": HF[:1], "B": HF[1:]}, "hf-ct": {"A": HF_CT[:1], "B": HF_CT[1:]}, "vllm": {"A": VLLM[:1], "B": VLLM[1:]}}
    base = {"hf": {"A": BASE[:1], "B": BASE[1:]}, "vllm": {"A": VLLM_BASE[:1], "B": VLLM_BASE[1:]}}
    out = compare_runs(runs, base)
    assert out["engine_gap"]["mean"] == pytest.approx(0.075)  # all four choices together
    assert out["by_dataset"]["A"]["engine_gap"]["max"] == pytest.approx(0.25)
    assert out["by_dataset"]["B"]["quant_effect"]["max"] == pytest.approx(0.1)
    assert out["by_dataset"]["B"]["gap_over_effect"]["max"] == pytest.approx(0.5)  # 0.05 / 0.1


def _checkpoint(path: Path, scheme: str | None) -> Path:
    import json

    config: dict = {"architectures": ["Qwen2ForCausalLM"]}
    if scheme is not None:
        w, a = scheme.lower().removeprefix("w").split("a")
        group = {"weights": {"num_bits": int(w)}}
        if a != "16":
            group["input_activations"] = {"num_bits": int(a)}
        config["quantization_config"] = {"quant_method": "compressed-tensors", "config_groups": {"g": group}}
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_plan_picks_dtypes_skips_what_vllm_cpu_cannot_load(tmp_path: Path) -> None:
    qset = QuantizedSet(
        root=tmp_path,
        base=_checkpoint(tmp_path / "base", None),
        variants={(m, s): _checkpoint(tmp_path / f"{m}-{s}", s) for m, s in (("rtn", "w8a8"), ("rtn", "w4a16"), ("rtn", "w8a16"))},
        failed={("awq", "w8a8"): "boom"},
    )
    plan = plan_checkpoints(qset, "cpu")
    got = [(c.method, c.scheme, c.dtype) for c in plan.checkpoints]
    assert got == [
        ("base", "-", "float32"), ("base", "-", "bfloat16"), ("rtn", "w8a8", "float32"), ("rtn", "w4a16", "bfloat16")
    ]
    assert "bfloat16 only" in plan.checkpoints[3].note and plan.checkpoints[2].note == ""
    skipped = {(s["method"], s["scheme"]): s["reason"] for s in plan.skipped}
    assert "W8A16" in skipped[("rtn", "w8a16")] and "boom" in skipped[("awq", "w8a8")]
    # On a GPU everything loads in float32, and the base is scored once.
    assert [c.dtype for c in plan_checkpoints(qset, "cuda").checkpoints] == ["float32"] * 4
