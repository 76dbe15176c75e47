"""End-to-end vLLM engine tests against the HF engine on tiny random models.

They need vLLM and a CUDA GPU (a separate environment, see docs/engines-vllm.md) and are
skipped otherwise. vLLM runs in bf16 and the HF reference in fp32 on CPU, so scores are
compared with a bf16-appropriate tolerance per scored token.
"""

from __future__ import annotations

import importlib.util

import pytest

from ray_bench.config import EngineConfig, ModelSpec
from ray_bench.engines.base import GenerateRequest, ScoreRequest, create_engine


def _vllm_and_gpu() -> bool:
    if importlib.util.find_spec("vllm") is None:
        return False
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(not _vllm_and_gpu(), reason="needs vLLM installed and a CUDA GPU"),
]

#: |vLLM bf16 - HF fp32| allowed per scored token (bf16 rounding is ~4e-3 relative).
BF16_ATOL_PER_TOKEN = 0.05
VLLM_OPTIONS = {"gpu_memory_utilization": 0.25, "max_model_len": 1024, "enforce_eager": True}

QUESTIONS = [
    ScoreRequest("q0", "Who was the doctor?", ("the man", "the woman", "cannot be determined")),
    ScoreRequest("q1", "Who is rich?", ("yes", "no")),
    # Same prompt, choices sharing their first tokens: exercises prefix-cache hits and re-sends.
    ScoreRequest("q2", "Who is rich?", ("yes yes", "yes no", "yes")),
    ScoreRequest("q3", " ".join(["the student asked the teacher why"] * 6), ("maybe", "not the student")),
]
CONVERSATIONS = [
    GenerateRequest("g0", ("Hello there",)),
    GenerateRequest("g1", ("Tell me about the doctor", "Why is that?")),
    GenerateRequest("g2", ("Is the student lazy?",)),
    GenerateRequest("g3", ("One", "Two", "Three")),
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from ray_bench.demo.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("vllm-e2e-tiny"), arch="llama")


@pytest.fixture(scope="module")
def peaked_dir(tmp_path_factory, tiny_dir):
    """The tiny model with a scaled-up LM head: large argmax margins, so greedy decoding
    in bf16 (vLLM) and fp32 (HF) should pick the same tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_dir), dtype=torch.float32)
    with torch.no_grad():
        model.lm_head.weight.mul_(60.0)
    out = tmp_path_factory.mktemp("vllm-e2e-peaked")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(tiny_dir)).save_pretrained(out)
    return out


def _engine(path, name, **config):
    return create_engine(ModelSpec(name="tiny", path=str(path)), EngineConfig(name=name, **config))


@pytest.fixture(scope="module")
def hf_scores(tiny_dir):
    engine = _engine(tiny_dir, "hf", dtype="float32", device="cpu")
    try:
        return engine.score_choices(QUESTIONS)
    finally:
        engine.close()


@pytest.mark.parametrize("method", ["token_ids", "prompt_logprobs"])
def test_scores_match_hf(tiny_dir, hf_scores, method):
    engine = _engine(tiny_dir, "vllm", dtype="bfloat16", options={**VLLM_OPTIONS, "scoring_method": method})
    try:
        got = engine.score_choices(QUESTIONS)
        info = engine.info()
    finally:
        engine.close()
    assert info.extra["scoring_method"] == method and info.extra["quantization"] == "none"
    assert info.extra["checkpoint_quant_method"] == "none" and info.extra["vllm_version"]
    for ref, res in zip(hf_scores, got):
        assert res.error is None, res.error
        assert res.num_tokens == ref.num_tokens
        for ours, theirs, n in zip(res.logprob_sums, ref.logprob_sums, ref.num_tokens):
            assert ours == pytest.approx(theirs, abs=BF16_ATOL_PER_TOKEN * n)


def test_too_long_question_is_an_error_not_an_abort(tiny_dir):
    engine = _engine(tiny_dir, "vllm", options={**VLLM_OPTIONS, "max_model_len": 64})
    try:
        got = engine.score_choices([QUESTIONS[0], ScoreRequest("long", "why " * 200, ("yes", "no"))])
    finally:
        engine.close()
    assert got[0].error is None and "max_model_len" in got[1].error


def test_greedy_generation_matches_hf_and_is_batch_independent(peaked_dir):
    hf = _engine(peaked_dir, "hf", dtype="float32", device="cpu", max_new_tokens=8)
    try:
        ref = hf.generate(CONVERSATIONS)
    finally:
        hf.close()
    engine = _engine(peaked_dir, "vllm", max_new_tokens=8, options=VLLM_OPTIONS)
    try:
        batched = engine.generate(CONVERSATIONS)
        alone = [engine.generate([conv])[0] for conv in CONVERSATIONS]
    finally:
        engine.close()
    assert [g.responses for g in batched] == [g.responses for g in alone]
    assert [len(g.responses) for g in batched] == [len(c.turns) for c in CONVERSATIONS]
    assert all(0 < g.num_output_tokens <= 8 * len(c.turns) for g, c in zip(batched, CONVERSATIONS))
    # bf16 vs fp32 can still flip a rare near-tie, so allow one conversation to differ.
    same = sum(a.responses == b.responses for a, b in zip(batched, ref))
    assert same >= len(CONVERSATIONS) - 1, (batched, ref)


def test_seeded_sampling_is_reproducible(tiny_dir):
    def run(seed):
        engine = _engine(tiny_dir, "vllm", max_new_tokens=8, temperature=1.0, seed=seed, options=VLLM_OPTIONS)
        try:
            return [g.responses for g in engine.generate(CONVERSATIONS)]
        finally:
            engine.close()

    first = run(5)
    assert run(5) == first
    assert run(6) != first
