"""CPU tests of the vLLM engine's orchestration with a fake ``LLM`` (vLLM is not needed).

The fake mirrors the vLLM 0.33 contract the engine relies on: token-id prompts,
``prompt_token_id_logprobs`` of shape ``[len(choice), 1]`` (or ``None`` when a
prefix-cache hit dropped the scores), flat ``prompt_logprobs``, one failing request
aborting the whole call, and completions that end with their stop token.
"""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest

from ray_bench.config import EngineConfig, ModelSpec
from ray_bench.engines import vllm_options as vo
from ray_bench.engines.base import GenerateRequest, ScoreRequest, create_engine
from ray_bench.engines.prompts import build_messages, render_prompt, score_spans
from ray_bench.engines.vllm import VllmEngine, create_vllm_engine
from ray_bench.errors import ConfigError, DependencyError

VLLM_INSTALLED = importlib.util.find_spec("vllm") is not None
POISON = "POISON"


def fake_logprob(prefix: list[int], token: int) -> float:
    """A deterministic stand-in for log p(token | prefix)."""
    return -((sum(prefix) * 31 + token * 17 + len(prefix)) % 97) / 10.0 - 0.05


def expected_sum(prompt_ids: list[int], choice_ids: list[int]) -> float:
    ids = [*prompt_ids, *choice_ids]
    return sum(fake_logprob(ids[:pos], ids[pos]) for pos in range(len(prompt_ids), len(ids)))


class _Flat(SimpleNamespace):
    pass


class FakeLLM:
    """Duck-typed ``vllm.LLM``: ``generate`` and ``model_config`` only."""

    def __init__(self, *, max_model_len: int = 256, vocab: int = 4096, poison_ids=(), drop=lambda ids: False):
        self.model_config = SimpleNamespace(
            max_model_len=max_model_len, dtype="torch.bfloat16", quantization=None, get_vocab_size=lambda: vocab
        )
        self.calls: list[tuple[list[list[int]], list[dict]]] = []
        self.poison_ids = set(poison_ids)
        self.drop = drop  # which prompts lose their token-id scores to a cache hit

    def generate(self, prompts, params, use_tqdm=True):
        assert use_tqdm is False
        ids_list = [p["prompt_token_ids"] for p in prompts]
        params = params if isinstance(params, list) else [params] * len(prompts)
        self.calls.append((ids_list, params))
        if any(self.poison_ids & set(ids) for ids in ids_list):
            raise ValueError("token id out of vocabulary")  # vLLM aborts the whole call
        return [self._one(ids, sp) for ids, sp in zip(ids_list, params)]

    def _one(self, ids, sp):
        if "prompt_logprob_token_ids" in sp:
            start, rows = sp["prompt_logprob_start"], sp["prompt_logprob_token_ids"]
            assert len(rows) == len(ids) - 1 - start
            if self.drop(ids) and not sp["skip_reading_prefix_cache"]:
                return {"prompt_token_ids": ids, "prompt_token_id_logprobs": None}
            scores = np.array([[fake_logprob(ids[: start + i + 1], row[0])] for i, row in enumerate(rows)])
            return {"prompt_token_ids": ids, "prompt_token_id_logprobs": scores}
        if sp.get("prompt_logprobs") == 0:
            flat = _Flat(start_indices=[0], token_ids=[], logprobs=[])
            for pos in range(1, len(ids)):
                flat.start_indices.append(len(flat.logprobs))
                flat.token_ids.append(ids[pos])
                flat.logprobs.append(fake_logprob(ids[:pos], ids[pos]))
            return SimpleNamespace(prompt_token_ids=ids, prompt_logprobs=flat, prompt_token_id_logprobs=None)
        # Generation: three ordinary tokens, then EOS (kept in token_ids as vLLM does).
        base = 40 + (sum(ids) + (sp["seed"] or 0)) % 200
        tokens = [base, base + 1, base + 2][: sp["max_tokens"]]
        finished = "stop" if len(tokens) < sp["max_tokens"] else "length"
        if finished == "stop":
            tokens.append(1)  # </s>
        return {"prompt_token_ids": ids, "outputs": [{"token_ids": tokens, "finish_reason": finished}]}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    from ray_bench.demo.tiny import build_tokenizer

    return AutoTokenizer.from_pretrained(str(build_tokenizer(tmp_path_factory.mktemp("vllm-tok"))))


def make_engine(tokenizer, llm, **config):
    options = vo.parse_vllm_options(config.pop("options", {}))
    if options.scoring_method == "auto":  # create_vllm_engine resolves it from the model runner
        options = options.model_copy(update={"scoring_method": "token_ids"})
    cfg = EngineConfig(name="vllm", **config)
    return VllmEngine(
        llm,
        tokenizer,
        model=ModelSpec(name="tiny", path="/models/tiny"),
        config=cfg,
        options=options,
        make_params=lambda kwargs: kwargs,
        make_prompt=lambda ids: {"prompt_token_ids": ids},
        recoverable=(ValueError,),
        info_extra={"vllm_version": "0.33.0"},
    )


QUESTIONS = [
    ScoreRequest("q0", "Who was the doctor?", ("the man", "the woman", "cannot be determined")),
    ScoreRequest("q1", "Who is rich?", ("yes", "no")),
    ScoreRequest("q2", "Is the student lazy?", ("maybe", "no", "yes", "unknown")),
]


def _expected(tokenizer, req):
    prompt_ids, choice_ids = score_spans(tokenizer, req.prompt, req.choices)
    return [expected_sum(prompt_ids, c) for c in choice_ids], [len(c) for c in choice_ids]


# ---------------------------------------------------------------- creation without vLLM


@pytest.mark.skipif(VLLM_INSTALLED, reason="vLLM is installed here")
def test_creating_without_vllm_raises_dependency_error_with_hint():
    model = ModelSpec(name="m", path="/does/not/matter")
    with pytest.raises(DependencyError) as info:
        create_engine(model, EngineConfig(name="vllm"))
    assert "vllm" in info.value.message
    assert info.value.hint == "Install the extra: pip install 'ray-bench[vllm]'."


def test_invalid_options_fail_before_vllm_is_needed():
    model = ModelSpec(name="m", path="/m")
    with pytest.raises(ConfigError, match="max_num_seq"):
        create_vllm_engine(model, EngineConfig(name="vllm", options={"max_num_seq": 8}))
    with pytest.raises(ConfigError, match="temperature"):
        create_vllm_engine(model, EngineConfig(name="vllm", temperature=2.5))


# ---------------------------------------------------------------- scoring


@pytest.mark.parametrize("method", ["token_ids", "prompt_logprobs"])
def test_scores_match_the_shared_spans(tokenizer, method):
    llm = FakeLLM()
    engine = make_engine(tokenizer, llm, options={"scoring_method": method})
    scores = engine.score_choices(QUESTIONS)
    assert len(llm.calls) == 1  # every question in one call
    for req, got in zip(QUESTIONS, scores):
        sums, counts = _expected(tokenizer, req)
        assert got.error is None and got.question_id == req.question_id
        assert got.num_tokens == tuple(counts)
        assert got.logprob_sums == pytest.approx(sums)


def test_requests_are_exact_token_ids_with_choices_adjacent(tokenizer):
    llm = FakeLLM()
    make_engine(tokenizer, llm).score_choices(QUESTIONS[:2])
    sent, params = llm.calls[0]
    prompt_ids, choice_ids = score_spans(tokenizer, QUESTIONS[0].prompt, QUESTIONS[0].choices)
    assert [s[: len(prompt_ids)] for s in sent[:3]] == [prompt_ids] * 3
    assert [s[len(prompt_ids) :] for s in sent[:3]] == choice_ids
    assert sum(1 for t in prompt_ids if t == tokenizer.bos_token_id) == 1  # no second BOS
    assert all(p["skip_reading_prefix_cache"] is False for p in params)
    assert len(sent) == 3 + 2


def test_empty_results_are_resent_without_cache_reads(tokenizer):
    firsts = {tuple(score_spans(tokenizer, q.prompt, q.choices)[0]) for q in QUESTIONS}
    # Later choices of every question lose their scores to a prefix-cache hit.
    llm = FakeLLM(drop=lambda ids: not any(tuple(ids[: len(f)]) == f and len(ids) - len(f) <= 1 for f in firsts))
    scores = make_engine(tokenizer, llm).score_choices(QUESTIONS)
    assert len(llm.calls) == 2
    resent, params = llm.calls[1]
    assert all(p["skip_reading_prefix_cache"] is True for p in params)
    assert 0 < len(resent) < len(llm.calls[0][0])
    for req, got in zip(QUESTIONS, scores):
        assert got.error is None
        assert got.logprob_sums == pytest.approx(_expected(tokenizer, req)[0])


def test_still_empty_after_resend_is_a_question_error(tokenizer):
    target = score_spans(tokenizer, QUESTIONS[1].prompt, QUESTIONS[1].choices)
    always = [*target[0], *target[1][1]]
    llm = FakeLLM(drop=lambda ids: ids == always)

    def drop_always(ids, sp, original=llm._one):
        if ids == always:
            return {"prompt_token_ids": ids, "prompt_token_id_logprobs": None}
        return original(ids, sp)

    llm._one = drop_always
    scores = make_engine(tokenizer, llm).score_choices(QUESTIONS)
    assert scores[1].error and "[1]" in scores[1].error
    assert scores[0].error is None and scores[2].error is None


def test_one_invalid_question_does_not_abort_the_batch(tokenizer):
    bad = score_spans(tokenizer, QUESTIONS[2].prompt, QUESTIONS[2].choices)[1][3][0]
    llm = FakeLLM(poison_ids=[bad])
    scores = make_engine(tokenizer, llm).score_choices(QUESTIONS)
    assert scores[2].error and "refused" in scores[2].error
    assert scores[0].error is None and scores[1].error is None
    assert scores[0].logprob_sums == pytest.approx(_expected(tokenizer, QUESTIONS[0])[0])


def test_too_long_questions_are_not_sent(tokenizer):
    short = ScoreRequest("short", "Hi", ("yes",))
    long = ScoreRequest("long", " ".join(["the doctor asked why"] * 30), ("yes", "no"))
    limit = len(score_spans(tokenizer, short.prompt, short.choices)[0]) + 5
    llm = FakeLLM(max_model_len=limit)
    scores = make_engine(tokenizer, llm).score_choices([long, short])
    assert "max_model_len" in scores[0].error and scores[1].error is None
    assert len(llm.calls[0][0]) == 1


# ---------------------------------------------------------------- generation


def test_multi_turn_generation_is_turn_by_turn_with_history(tokenizer):
    llm = FakeLLM()
    reqs = [
        GenerateRequest("a", ("Hello there", "Why is that?")),
        GenerateRequest("b", ("Tell me a story",)),
        GenerateRequest("c", ("One", "Two", "Three")),
    ]
    gens = make_engine(tokenizer, llm, max_new_tokens=8).generate(reqs)
    assert [len(call[0]) for call in llm.calls] == [3, 2, 1]  # all conversations of a turn in one call
    assert [len(g.responses) for g in gens] == [2, 1, 3]
    assert all(g.error is None for g in gens)
    assert gens[0].num_output_tokens == 6  # the EOS token is not counted
    expected_turn2 = render_prompt(tokenizer, build_messages(reqs[0].turns, [gens[0].responses[0]]))[0]
    assert llm.calls[1][0][0] == expected_turn2
    first = llm._one(llm.calls[0][0][0], llm.calls[0][1][0])["outputs"][0]["token_ids"][:-1]
    assert gens[0].responses[0] == tokenizer.decode(first, skip_special_tokens=True)


def test_greedy_and_seeded_sampling_params(tokenizer):
    llm = FakeLLM()
    make_engine(tokenizer, llm, max_new_tokens=4).generate([GenerateRequest("a", ("Hi",))])
    greedy = llm.calls[0][1][0]
    assert greedy["temperature"] == 0.0 and greedy["seed"] is None and greedy["max_tokens"] == 4
    llm = FakeLLM()
    make_engine(tokenizer, llm, max_new_tokens=4, temperature=0.7, top_p=0.9, seed=3).generate(
        [GenerateRequest("a", ("Hi", "More")), GenerateRequest("b", ("Hi",))]
    )
    seeds = [p["seed"] for call in llm.calls for p in call[1]]
    assert seeds == [_naive_seed(3, "a", 0), _naive_seed(3, "b", 0), _naive_seed(3, "a", 1)]
    assert len(set(seeds)) == 3 and llm.calls[0][1][0]["top_p"] == 0.9


def test_generation_errors_are_per_conversation(tokenizer):
    long_turn = " ".join(["the doctor asked why"] * 30)
    ok = GenerateRequest("ok", ("Hi",))
    ok_len = len(render_prompt(tokenizer, build_messages(["Hi"]))[0])
    llm = FakeLLM(max_model_len=ok_len + 8)
    gens = make_engine(tokenizer, llm, max_new_tokens=8).generate(
        [GenerateRequest("long", (long_turn,)), ok, GenerateRequest("empty", ())]
    )
    assert "max_model_len" in gens[0].error and "no turns" in gens[2].error
    assert gens[1].error is None and gens[1].response


def test_info_records_version_quantization_and_settings(tokenizer):
    info = make_engine(tokenizer, FakeLLM(), options={"max_model_len": 256}).info()
    assert info.engine == "vllm" and info.dtype == "bfloat16" and info.device == "cuda"
    assert info.extra["vllm_version"] == "0.33.0"
    assert info.extra["quantization"] == "none"
    assert info.extra["scoring_method"] == "token_ids"
    assert all(isinstance(v, str) for v in info.extra.values())


def test_closed_engine_refuses_work(tokenizer):
    from ray_bench.errors import EngineError

    engine = make_engine(tokenizer, FakeLLM())
    engine.close()
    engine.close()  # idempotent
    with pytest.raises(EngineError, match="closed"):
        engine.score_choices(QUESTIONS)
    assert engine.info().engine == "vllm"


def _naive_seed(seed, question_id, turn):
    """The documented per-question seed rule, computed independently of ray_bench."""
    import hashlib

    digest = hashlib.sha256(f"{seed}\x1f{question_id}\x1f{turn}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def test_request_seed_rule_and_the_reference_fixed_seed():
    from ray_bench.engines.base import Decoding

    assert Decoding(seed=7).request_seed("q-1", 2) == _naive_seed(7, "q-1", 2)
    assert Decoding(seed=1, seed_per_question=False).request_seed("q-1", 2) == 1


def test_per_request_decoding_reaches_sampling_params(tokenizer):
    from ray_bench.engines.base import Decoding

    llm = FakeLLM()
    fixed = Decoding(temperature=0.7, max_new_tokens=3, seed=1, seed_per_question=False)
    make_engine(tokenizer, llm, max_new_tokens=4).generate(
        [GenerateRequest("a", ("Hi",), decoding=fixed), GenerateRequest("b", ("Hi",))]
    )
    params = llm.calls[0][1]
    assert (params[0]["temperature"], params[0]["max_tokens"], params[0]["seed"]) == (0.7, 3, 1)
    assert (params[1]["temperature"], params[1]["max_tokens"], params[1]["seed"]) == (0.0, 4, None)
