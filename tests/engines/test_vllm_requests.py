"""CPU tests of the pure vLLM request/response functions (vLLM is not needed)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest

from ray_bench.engines import vllm_options as vo
from ray_bench.engines import vllm_requests as vr
from ray_bench.errors import ConfigError, ModelLoadError, OutputParseError, RequestValidationError

PROMPT = (1, 5, 9)
CHOICES = ((20, 21), (30,), (40, 41, 42))


def _requests():
    return vr.build_question_requests(3, PROMPT, CHOICES)


# ---------------------------------------------------------------- options


def test_options_defaults_and_llm_kwargs():
    opts = vo.parse_vllm_options({})
    assert opts.scoring_method == "auto"
    kwargs = vo.llm_kwargs("/m", None, opts, "bfloat16", 7)
    assert kwargs == {
        "model": "/m",
        "revision": None,
        "dtype": "bfloat16",
        "seed": 7,
        "gpu_memory_utilization": 0.85,
        "tensor_parallel_size": 1,
        "distributed_executor_backend": "uni",
        "enable_prefix_caching": True,
        "enforce_eager": False,
        "trust_remote_code": False,
    }


def test_cpu_defaults_reserve_a_fixed_kv_cache_not_a_share_of_ram():
    opts = vo.parse_vllm_options({})
    kwargs = vo.llm_kwargs("/m", None, opts, "float32", 0, device="cpu")
    assert kwargs["kv_cache_memory_bytes"] == 1 << 30 and "gpu_memory_utilization" not in kwargs
    assert kwargs["distributed_executor_backend"] == "mp"
    explicit = vo.parse_vllm_options({"gpu_memory_utilization": 0.1})
    assert vo.memory_kwargs(explicit, "cpu") == {"gpu_memory_utilization": 0.1}
    both = vo.parse_vllm_options({"kv_cache_memory_bytes": 1000, "block_size": 32})
    assert vo.memory_kwargs(both, "cuda") == {"kv_cache_memory_bytes": 1000}
    assert vo.llm_kwargs("/m", None, both, "float32", 0, device="cpu")["block_size"] == 32


def test_tensor_parallel_runs_in_local_processes_never_through_ray():
    tp2 = vo.parse_vllm_options({"tensor_parallel_size": 2})
    assert vo.executor_backend(tp2, "cuda") == "mp"
    assert vo.executor_backend(vo.parse_vllm_options({}), "cuda") == "uni"


def test_auto_dtype_is_fp32_on_cpu_and_bf16_on_gpu():
    assert vo.resolve_dtype("auto", None, "cpu") == "float32"
    assert vo.resolve_dtype("auto", None, "cuda") == "bfloat16"
    assert vo.resolve_dtype("bfloat16", None, "cpu") == "bfloat16"


def test_options_set_limits_are_passed():
    opts = vo.parse_vllm_options(
        {"max_model_len": 4096, "max_num_seqs": 512, "max_num_batched_tokens": 16384, "tensor_parallel_size": 2}
    )
    kwargs = vo.llm_kwargs("/m", "main", opts, "float16", 0)
    assert (kwargs["max_model_len"], kwargs["max_num_seqs"], kwargs["max_num_batched_tokens"]) == (4096, 512, 16384)
    assert kwargs["tensor_parallel_size"] == 2 and kwargs["revision"] == "main"


@pytest.mark.parametrize(
    "options, key",
    [
        ({"gpu_memory_utilisation": 0.9}, "gpu_memory_utilisation"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ({"tensor_parallel_size": 0}, "tensor_parallel_size"),
        ({"scoring_method": "logits"}, "scoring_method"),
        ({"max_model_len": 0}, "max_model_len"),
        ({"dtype": "int8"}, "dtype"),
    ],
)
def test_options_reject_unknown_and_invalid(options, key):
    with pytest.raises(ConfigError, match=key):
        vo.parse_vllm_options(options)


def test_resolve_dtype():
    assert vo.resolve_dtype("auto", None) == "bfloat16"
    assert vo.resolve_dtype("float16", None) == "float16"
    assert vo.resolve_dtype("auto", "auto") == "auto"
    assert vo.resolve_dtype("float32", "float32") == "float32"
    with pytest.raises(ConfigError, match="contradicts"):
        vo.resolve_dtype("float32", "bfloat16")


# ---------------------------------------------------------------- request building


def test_question_requests_are_adjacent_with_exact_ids():
    reqs = _requests()
    assert [(r.question, r.choice) for r in reqs] == [(3, 0), (3, 1), (3, 2)]
    assert reqs[2].prompt() == {"prompt_token_ids": [1, 5, 9, 40, 41, 42]}


def test_token_id_params():
    req = _requests()[0]
    params = vr.scoring_params(req, "token_ids")
    assert params["prompt_logprob_token_ids"] == [[20], [21]]
    # rows = prompt_len - 1 - start must equal the choice length (vLLM input_processor).
    assert len(req.token_ids) - 1 - params["prompt_logprob_start"] == len(req.choice_ids)
    assert params["skip_reading_prefix_cache"] is False
    assert (params["max_tokens"], params["temperature"], params["detokenize"]) == (1, 0.0, False)
    assert "prompt_logprobs" not in params
    assert vr.scoring_params(req, "token_ids", skip_reading_prefix_cache=True)["skip_reading_prefix_cache"] is True


def test_prompt_logprobs_params_read_the_cache_and_the_uncached_method_does_not():
    req = _requests()[0]
    params = vr.scoring_params(req, "prompt_logprobs")
    assert params["prompt_logprobs"] == 0 and params["flat_logprobs"] is True
    assert params["skip_reading_prefix_cache"] is False and "prompt_logprob_token_ids" not in params
    assert vr.scoring_params(req, "prompt_logprobs", skip_reading_prefix_cache=True)["skip_reading_prefix_cache"]
    assert vr.scoring_params(req, "prompt_logprobs_uncached")["skip_reading_prefix_cache"] is True


def test_prompt_logprobs_with_a_cache_hit_past_the_prompt_are_resent():
    req = vr.ChoiceRequest(0, 0, (5, 6, 7, 8), (9, 10))
    ids = req.token_ids
    flat = {"start_indices": list(range(len(ids))), "token_ids": [None, *ids[1:]], "logprobs": [0.0, *[-1.0] * 5]}
    # The logits of position 3 (the last prompt token) predict choice token 9: 3 cached tokens is fine.
    fine = {"prompt_token_ids": ids, "prompt_logprobs": flat, "num_cached_tokens": 3}
    assert vr.parse_choice_output(fine, req, "prompt_logprobs") == vr.ChoiceResult(-2.0, 2)
    # 4 cached tokens: position 3 was not computed, its entry is uninitialised memory.
    hit = {**fine, "num_cached_tokens": 4}
    assert vr.needs_resend(hit, req, "prompt_logprobs")
    assert vr.parse_choice_output(hit, req, "prompt_logprobs") is None


def test_check_question_lengths():
    vr.check_question([1] * 8, [[2, 3]], max_model_len=11)  # 10 tokens + 1 output token fit
    with pytest.raises(RequestValidationError, match="max_model_len=10"):
        vr.check_question([1] * 8, [[2], [2, 3]], max_model_len=10)
    with pytest.raises(RequestValidationError, match="choice 1 tokenizes to no tokens"):
        vr.check_question([1], [[2], []], max_model_len=10)
    with pytest.raises(RequestValidationError, match="no tokens"):
        vr.check_question([], [[2]], max_model_len=10)
    with pytest.raises(RequestValidationError, match="no choices"):
        vr.check_question([1], [], max_model_len=10)
    with pytest.raises(RequestValidationError, match=r"\[99\].*size 50"):
        vr.check_question([1], [[99]], max_model_len=10, vocab_size=50)


# ---------------------------------------------------------------- parsing: token-id path


def _lp(i: int) -> float:
    return -0.25 * (i + 1)


def test_parse_token_id_output_numpy_object():
    req = _requests()[2]
    out = SimpleNamespace(
        prompt_token_ids=req.token_ids,
        prompt_token_id_logprobs=np.array([[_lp(0)], [_lp(1)], [_lp(2)]], dtype=np.float32),
    )
    assert not vr.needs_resend(out, req, "token_ids")
    result = vr.parse_choice_output(out, req, "token_ids")
    assert result.num_tokens == 3
    assert result.logprob_sum == pytest.approx(-1.5)


def test_parse_token_id_output_plain_dict():
    req = _requests()[0]
    out = {"prompt_token_ids": req.token_ids, "prompt_token_id_logprobs": [[-1.0], [-2.0]]}
    assert vr.parse_choice_output(out, req, "token_ids") == vr.ChoiceResult(-3.0, 2)


def test_token_id_empty_result_needs_resend():
    req = _requests()[1]
    out = {"prompt_token_ids": req.token_ids, "prompt_token_id_logprobs": None}
    assert vr.needs_resend(out, req, "token_ids")
    assert vr.parse_choice_output(out, req, "token_ids") is None


@pytest.mark.parametrize(
    "scores, ids, match",
    [
        ([[-1.0]], None, "1 rows, expected 2"),
        ([[-1.0], [-math.inf]], None, "non-finite"),
        ([[-1.0], [-2.0]], [1, 5, 9, 20, 99], "differ"),
    ],
)
def test_token_id_malformed_output(scores, ids, match):
    req = _requests()[0]
    out = {"prompt_token_ids": ids or req.token_ids, "prompt_token_id_logprobs": scores}
    with pytest.raises(OutputParseError, match=match):
        vr.parse_choice_output(out, req, "token_ids")


# ---------------------------------------------------------------- parsing: prompt_logprobs=0 path


@dataclass
class _Flat:
    """Mirror of vllm.logprobs.FlatLogprobs (first entry per position = actual token)."""

    start_indices: list = field(default_factory=list)
    end_indices: list = field(default_factory=list)
    token_ids: list = field(default_factory=list)
    logprobs: list = field(default_factory=list)
    ranks: list = field(default_factory=list)

    def append(self, entries):
        self.start_indices.append(len(self.logprobs))
        for tok, lp, rank in entries:
            self.token_ids.append(tok)
            self.logprobs.append(lp)
            self.ranks.append(rank)
        self.end_indices.append(len(self.logprobs))

    def __len__(self):
        return len(self.start_indices)


def _position_logprob(pos: int) -> float:
    return -0.1 * pos


def _dict_prompt_logprobs(ids, as_objects: bool):
    entries = [None]
    for pos in range(1, len(ids)):
        lp = _position_logprob(pos)
        value = SimpleNamespace(logprob=lp, rank=3) if as_objects else {"logprob": lp, "rank": 3}
        # Top-1 alternative after the actual token, as with prompt_logprobs=1.
        entries.append({ids[pos]: value, 7777: {"logprob": -0.01, "rank": 1}})
    return entries


@pytest.mark.parametrize("as_objects", [True, False])
def test_parse_prompt_logprobs_dicts(as_objects):
    req = _requests()[2]  # prompt 3 tokens, choice at positions 3..5
    out = {"prompt_token_ids": req.token_ids, "prompt_logprobs": _dict_prompt_logprobs(req.token_ids, as_objects)}
    result = vr.parse_choice_output(out, req, "prompt_logprobs")
    assert result.num_tokens == 3
    assert result.logprob_sum == pytest.approx(-0.1 * (3 + 4 + 5))


def test_parse_prompt_logprobs_flat():
    req = _requests()[0]
    flat = _Flat()
    flat.append([])  # position 0 has no logprob (vLLM appends None)
    for pos in range(1, len(req.token_ids)):
        flat.append([(req.token_ids[pos], _position_logprob(pos), 2)])
    out = SimpleNamespace(prompt_token_ids=req.token_ids, prompt_logprobs=flat)
    assert vr.parse_choice_output(out, req, "prompt_logprobs") == vr.ChoiceResult(
        pytest.approx(-0.1 * (3 + 4)), 2
    )


def test_parse_prompt_logprobs_flat_as_plain_dict():
    req = _requests()[1]  # one choice token at position 3
    flat = {"start_indices": [0, 0, 1, 2], "token_ids": [5, 9, 30], "logprobs": [-9.0, -9.0, -0.7]}
    assert not vr.needs_resend({"prompt_logprobs": flat}, req, "prompt_logprobs")
    assert vr.parse_choice_output({"prompt_logprobs": flat}, req, "prompt_logprobs") == vr.ChoiceResult(-0.7, 1)
    short = {"start_indices": [0, 0, 1], "token_ids": [5, 9], "logprobs": [-9.0, -9.0]}
    assert vr.needs_resend({"prompt_logprobs": short}, req, "prompt_logprobs")


def test_prompt_logprobs_short_or_missing_needs_resend():
    req = _requests()[0]
    short = _dict_prompt_logprobs(req.token_ids, False)[:-1]
    assert vr.needs_resend({"prompt_logprobs": short}, req, "prompt_logprobs")
    assert vr.parse_choice_output({"prompt_logprobs": None}, req, "prompt_logprobs") is None


def test_prompt_logprobs_misaligned_is_an_error():
    req = _requests()[0]
    flat = _Flat()
    flat.append([])
    for pos in range(1, len(req.token_ids)):
        flat.append([(req.token_ids[pos] + 1, -1.0, 2)])
    with pytest.raises(OutputParseError, match="holds token"):
        vr.parse_choice_output({"prompt_logprobs": flat}, req, "prompt_logprobs")
    entries = _dict_prompt_logprobs(req.token_ids, False)
    entries[4] = {1234: {"logprob": -1.0}}
    with pytest.raises(OutputParseError, match="lacks the prompt token"):
        vr.parse_choice_output({"prompt_logprobs": entries}, req, "prompt_logprobs")


# ---------------------------------------------------------------- assembling


def test_assemble_scores():
    ok = vr.assemble_scores("q", 2, {1: vr.ChoiceResult(-2.0, 2), 0: vr.ChoiceResult(-1.0, 1)})
    assert ok.logprob_sums == (-1.0, -2.0) and ok.num_tokens == (1, 2) and ok.error is None
    assert ok.prediction == 0
    missing = vr.assemble_scores("q", 2, {0: vr.ChoiceResult(-1.0, 1)})
    assert missing.error and "[1]" in missing.error and missing.logprob_sums == ()
    failed = vr.assemble_scores("q", 2, {}, error="too long")
    assert failed.error == "too long" and failed.probs == ()


# ---------------------------------------------------------------- generation


def test_generation_params_greedy_and_seeded():
    greedy = vr.generation_params(32, 0.0, 0.9, 5)
    assert greedy["temperature"] == 0.0 and greedy["top_p"] == 1.0 and greedy["seed"] is None
    assert greedy["max_tokens"] == 32 and greedy["top_k"] == 0 and greedy["repetition_penalty"] == 1.0
    sampled = vr.generation_params(16, 0.7, 0.9, 5)
    assert (sampled["temperature"], sampled["top_p"], sampled["seed"]) == (0.7, 0.9, 5)


@pytest.mark.parametrize("temperature", [0.005, 2.5])
def test_generation_params_refuse_temperatures_vllm_would_change(temperature):
    with pytest.raises(ConfigError, match="temperature"):
        vr.generation_params(16, temperature, 1.0, 0)


def test_check_generation_prompt():
    vr.check_generation_prompt(10, 6, 16)
    with pytest.raises(RequestValidationError, match="max_model_len=16"):
        vr.check_generation_prompt(11, 6, 16)
    with pytest.raises(RequestValidationError):
        vr.check_generation_prompt(0, 6, 16)


def test_generated_token_ids():
    assert vr.generated_token_ids({"outputs": [{"token_ids": (4, 5), "finish_reason": "length"}]}) == [4, 5]
    # vLLM keeps the stop token at the end; the HF engine does not count it.
    assert vr.generated_token_ids({"outputs": [{"token_ids": (4, 5, 2), "finish_reason": "stop"}]}) == [4, 5]
    assert vr.generated_token_ids({"outputs": [{"token_ids": [2], "finish_reason": "stop"}]}) == []
    assert vr.generated_token_ids(SimpleNamespace(outputs=[SimpleNamespace(token_ids=[6])])) == [6]
    with pytest.raises(OutputParseError):
        vr.generated_token_ids({"outputs": []})


# ---------------------------------------------------------------- isolation


class _Refused(Exception):
    pass


def _submit_refusing(bad):
    calls = []

    def submit(batch):
        calls.append(list(batch))
        if bad in batch:
            raise _Refused(f"bad request {bad}")
        return [f"out-{x}" for x in batch]

    return submit, calls


def test_submit_isolated_one_call_when_valid():
    submit, calls = _submit_refusing("x")
    result = vr.submit_isolated([["a", "b"], [], ["c"]], submit, (_Refused,))
    assert result == [["out-a", "out-b"], [], ["out-c"]]
    assert calls == [["a", "b", "c"]]


def test_submit_isolated_narrows_a_refusal_to_its_group():
    submit, calls = _submit_refusing("b")
    result = vr.submit_isolated([["a", "b"], ["c"]], submit, (_Refused,))
    assert isinstance(result[0], _Refused) and result[1] == ["out-c"]
    assert calls == [["a", "b", "c"], ["a", "b"], ["c"]]
    single = vr.submit_isolated([["b"]], submit, (_Refused,))
    assert isinstance(single[0], _Refused)


def test_submit_isolated_bisects_large_batches():
    submit, calls = _submit_refusing("d")
    result = vr.submit_isolated([["a"], ["b"], ["c"], ["d"]], submit, (_Refused,))
    assert result[:3] == [["out-a"], ["out-b"], ["out-c"]] and isinstance(result[3], _Refused)
    assert calls == [["a", "b", "c", "d"], ["a", "b"], ["c", "d"], ["c"], ["d"]]


def test_submit_isolated_propagates_fatal_errors():
    def dead(batch):
        raise RuntimeError("engine dead")

    with pytest.raises(RuntimeError):
        vr.submit_isolated([["a"], ["b"]], dead, (_Refused,))


def test_submit_isolated_output_count_mismatch():
    with pytest.raises(OutputParseError):
        vr.submit_isolated([["a"]], lambda b: [], (_Refused,))


# ---------------------------------------------------------------- quantization detection

CT_W4A16 = {
    "quant_method": "compressed-tensors",
    "format": "pack-quantized",
    "quantization_status": "compressed",
    "config_groups": {
        "group_0": {
            "targets": ["Linear"],
            "weights": {"num_bits": 4, "type": "int", "strategy": "group", "group_size": 128},
            "input_activations": None,
        }
    },
}
CT_W8A8 = {
    "quant_method": "compressed_tensors",
    "format": "int-quantized",
    "config_groups": {
        "group_0": {
            "weights": {"num_bits": 8, "strategy": "channel"},
            "input_activations": {"num_bits": 8, "strategy": "token", "dynamic": True},
        }
    },
}


@pytest.mark.parametrize(
    "config, expected",
    [
        ({"quantization_config": CT_W4A16}, ("compressed-tensors", "pack-quantized", "W4A16")),
        ({"quantization_config": CT_W8A8}, ("compressed-tensors", "int-quantized", "W8A8")),
        ({"compression_config": CT_W4A16}, ("compressed-tensors", "pack-quantized", "W4A16")),
        ({"quantization_config": {"quant_method": "GPTQ", "bits": 4, "group_size": 128}}, ("gptq", None, "W4A16")),
        ({"quantization_config": {"quant_method": "awq", "version": "gemm", "bits": 4}}, ("awq", "gemm", "W4A16")),
        ({"quantization_config": {"quant_method": "fp8", "activation_scheme": "dynamic"}}, ("fp8", None, None)),
        ({"text_config": {"quantization_config": {"quant_method": "awq", "w_bit": 4}}}, ("awq", None, "W4A16")),
        ({"model_type": "llama"}, (None, None, None)),
    ],
)
def test_quantization_from_config(config, expected):
    info = vo.quantization_from_config(config)
    assert (info.method, info.format, info.scheme) == expected


def test_read_checkpoint_quantization(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "quantization_config": CT_W4A16}))
    info = vo.read_checkpoint_quantization(tmp_path)
    assert info.source == str(tmp_path / "config.json")
    assert info.as_extra() == {
        "checkpoint_quant_method": "compressed-tensors",
        "checkpoint_quant_format": "pack-quantized",
        "checkpoint_quant_scheme": "W4A16",
    }


def test_read_checkpoint_quantization_unquantized_hub_id_and_bad_file(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert vo.read_checkpoint_quantization(tmp_path).as_extra()["checkpoint_quant_method"] == "none"
    assert vo.read_checkpoint_quantization("org/some-hub-model") == vo.QuantizationInfo()
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="config.json"):
        vo.read_checkpoint_quantization(tmp_path)
