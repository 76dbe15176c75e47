"""HF engine choice scoring against an independent naive computation (fp32, CPU)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from ray_bench.config import EngineConfig, ModelSpec  # noqa: E402
from ray_bench.engines.base import ScoreRequest, create_engine  # noqa: E402
from ray_bench.engines.hf import HFEngine  # noqa: E402

TOL = 1e-5
_WORDS = "the old man young woman said doctor nurse who was likely to pay loan because church city".split()


def _questions(seed: int = 0) -> list[ScoreRequest]:
    """2-, 3- and 4-choice questions; tiny and long prompts; choices of very different lengths."""
    rng = random.Random(seed)

    def words(lo: int, hi: int) -> str:
        return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(lo, hi)))

    out = [
        ScoreRequest("short", "Yes?", ("yes", "no")),
        ScoreRequest("long", words(250, 300), ("A", words(25, 30), "cannot be determined")),
        ScoreRequest("mixed-lengths", words(5, 10), ("x", words(40, 45), "b", words(3, 5))),
    ]
    for i in range(9):
        k = 2 + i % 3
        out.append(ScoreRequest(f"q{i}", words(3, 120), tuple(words(1, 15) for _ in range(k))))
    return out


def _chat_ids(tokenizer, prompt: str) -> list[int]:
    encoded = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True
    )
    if hasattr(encoded, "keys"):
        encoded = encoded["input_ids"]
    return list(encoded)


def _naive_scores(model, prompt_ids: list[int], choice_ids: list[list[int]]) -> list[float]:
    """Each prompt+choice as its own sequence: plain forward, log_softmax, gather."""
    sums = []
    for ids in choice_ids:
        seq = torch.tensor([prompt_ids + ids])
        with torch.no_grad():
            logprobs = torch.log_softmax(model(seq).logits[0].float(), dim=-1)
        p = len(prompt_ids)
        sums.append(sum(float(logprobs[p - 1 + t, tok]) for t, tok in enumerate(ids)))
    return sums


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def loaded(request, tiny_llama_dir: Path, tiny_qwen2_dir: Path):
    """(engine, independent fp32 model, tokenizer) per architecture."""
    path = tiny_llama_dir if request.param == "llama" else tiny_qwen2_dir
    engine = create_engine(ModelSpec(name=request.param, path=str(path)), EngineConfig(name="hf", device="cpu"))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
    yield engine, model, tokenizer
    engine.close()


@pytest.fixture(scope="module")
def reference(loaded):
    """Naive per-choice sums and token counts of :func:`_questions`, computed once per model."""
    _, model, tokenizer = loaded
    ref = {}
    for q in _questions():
        prompt_ids = _chat_ids(tokenizer, q.prompt)
        # The template ends in "\n", so choices are appended without a leading space.
        choice_ids = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in q.choices]
        ref[q.question_id] = (_naive_scores(model, prompt_ids, choice_ids), [len(c) for c in choice_ids])
    return ref


def _forward_batches(engine: HFEngine) -> tuple[list, object]:
    """Record the input ids of every forward of the engine's model (via the embedding)."""
    seen: list[torch.Tensor] = []
    embed = engine.model.get_input_embeddings()
    handle = embed.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    return seen, handle


@pytest.mark.parametrize("budget,expect", [(1, "one-per-batch"), (600, "some"), (1_000_000, "single")])
def test_scores_match_naive_reference(loaded, reference, budget: int, expect: str) -> None:
    engine, _, tokenizer = loaded
    variant = HFEngine(engine.model, engine.tokenizer, EngineConfig(max_batch_tokens=budget), model_path="x")
    questions = _questions()
    seen, handle = _forward_batches(variant)
    try:
        results = variant.score_choices(questions)
    finally:
        handle.remove()
    rows = [int(batch.shape[0]) for batch in seen]
    if expect == "one-per-batch":
        assert rows == [1] * len(questions)
    elif expect == "single":
        assert rows == [len(questions)]
    else:
        assert len(rows) > 1 and max(rows) > 1
    _assert_exact(results, questions, reference)


def test_probs_and_prediction_match_hand_computation(loaded) -> None:
    engine, _, _ = loaded
    res = engine.score_choices(_questions()[:4])
    for r in res:
        means = [s / n for s, n in zip(r.logprob_sums, r.num_tokens)]
        geo = [math.exp(m) for m in means]
        probs = [g / sum(geo) for g in geo]
        assert r.probs == pytest.approx(probs, rel=1e-9)
        assert r.prediction == max(range(len(probs)), key=probs.__getitem__)


def test_model_sees_exactly_one_bos(loaded) -> None:
    engine, _, tokenizer = loaded
    bos, pad = tokenizer.bos_token_id, engine.pad_id
    seen, handle = _forward_batches(engine)
    try:
        engine.score_choices(_questions()[:5])
    finally:
        handle.remove()
    assert seen
    for batch in seen:
        for row in batch.tolist():
            real = [t for t in row if t != pad]
            assert real[0] == bos and real.count(bos) == 1, row[:5]


def test_leading_space_when_template_ends_without_whitespace(loaded) -> None:
    engine, model, _ = loaded
    tokenizer = transformers.AutoTokenizer.from_pretrained(engine.model_path)
    tokenizer.chat_template = (
        "{{ bos_token }}{% for m in messages %}<|user|>{{ m['content'] }}<|end|>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    variant = HFEngine(engine.model, tokenizer, EngineConfig(), model_path="custom-template")
    question = ScoreRequest("space", "Who was likely to pay?", ("the old man", "the young woman", "unknown"))
    prompt_ids = _chat_ids(tokenizer, question.prompt)
    assert prompt_ids[-1] == tokenizer.convert_tokens_to_ids("<|assistant|>")
    spaced = [tokenizer(" " + c, add_special_tokens=False)["input_ids"] for c in question.choices]
    assert spaced[0] != tokenizer(question.choices[0], add_special_tokens=False)["input_ids"]
    seen, handle = _forward_batches(variant)
    try:
        (res,) = variant.score_choices([question])
    finally:
        handle.remove()
    assert seen[0][0].tolist() == prompt_ids + [t for ids in spaced for t in ids]
    assert list(res.num_tokens) == [len(ids) for ids in spaced]
    expected = _naive_scores(model, prompt_ids, spaced)
    assert max(abs(a - b) for a, b in zip(res.logprob_sums, expected)) < TOL


def test_per_question_errors_do_not_sink_the_batch(loaded, reference) -> None:
    engine, _, _ = loaded
    good = _questions()[:3]
    too_long = ScoreRequest("too-long", " ".join(["the old man"] * 800), ("yes", "no"))
    empty = ScoreRequest("empty-choice", "Pick one.", ("yes", ""))
    no_choices = ScoreRequest("no-choices", "Pick one.", ())
    results = engine.score_choices([good[0], too_long, good[1], empty, no_choices, good[2]])
    by_id = {r.question_id: r for r in results}
    assert "model allows 2048" in by_id["too-long"].error
    assert "choice 1 has no tokens" in by_id["empty-choice"].error
    assert "no choices" in by_id["no-choices"].error
    for q in good:
        r = by_id[q.question_id]
        assert r.error is None
        assert max(abs(a - b) for a, b in zip(r.logprob_sums, reference[q.question_id][0])) < TOL
    assert by_id["too-long"].probs == () and by_id["too-long"].prediction is None


def test_failing_batch_is_retried_question_by_question(loaded, reference, monkeypatch) -> None:
    engine, _, _ = loaded
    questions = _questions()[:6]
    bad = engine._pack(questions[2])
    original = engine.scorer.score
    calls: list[int] = []

    def flaky(batch):
        calls.append(len(batch))
        if any(pq.input_ids == bad.input_ids for pq in batch):
            raise RuntimeError("simulated kernel failure")
        return original(batch)

    monkeypatch.setattr(engine.scorer, "score", flaky)
    results = engine.score_choices(questions)
    assert calls[0] == len(questions) and calls[1:] == [1] * len(questions)
    for q, r in zip(questions, results):
        if q is questions[2]:
            assert r.error == "RuntimeError: simulated kernel failure"
        else:
            assert r.error is None
            assert max(abs(a - b) for a, b in zip(r.logprob_sums, reference[q.question_id][0])) < TOL


def test_top_level_model_hooks_run(loaded) -> None:
    """compressed-tensors decompresses weights in a pre-hook on the top-level model."""
    engine, _, _ = loaded
    calls: list[int] = []
    handle = engine.model.register_forward_pre_hook(lambda _m, _a: calls.append(1))
    try:
        variant = HFEngine(engine.model, engine.tokenizer, EngineConfig(max_batch_tokens=1), model_path="x")
        results = variant.score_choices(_questions()[:3])
    finally:
        handle.remove()
    assert all(r.error is None for r in results)
    assert len(calls) == 3


def test_eager_attention_and_full_logits_paths_match(loaded, reference) -> None:
    """The additive float mask (eager) and the no-separable-head fallback give the same sums."""
    engine, _, _ = loaded
    eager_model = transformers.AutoModelForCausalLM.from_pretrained(
        engine.model_path, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    eager = HFEngine(eager_model, engine.tokenizer, EngineConfig(max_batch_tokens=700), model_path="eager")
    assert not eager.scorer.bool_mask
    full = HFEngine(engine.model, engine.tokenizer, EngineConfig(max_batch_tokens=700), model_path="full")
    full.scorer.split = None
    questions = _questions()
    for variant in (eager, full):
        for q, r in zip(questions, variant.score_choices(questions)):
            assert r.error is None
            assert max(abs(a - b) for a, b in zip(r.logprob_sums, reference[q.question_id][0])) < TOL


# --------------------------------------------------------------- cross-question prefix sharing
_INSTRUCTION = (
    "Read the context and answer the question with one of the options. The people who said "
    "the old man was likely to pay the loan because the church said so were asked"
)


def _shared_questions(seed: int = 1) -> list[ScoreRequest]:
    """Questions that share prefixes of many lengths, and some that share nothing."""
    rng = random.Random(seed)

    def words(lo: int, hi: int) -> str:
        return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(lo, hi)))

    contexts = [words(10, 40) for _ in range(4)]
    out = []
    for i in range(14):
        context = contexts[i % 4]
        prompt = f"{_INSTRUCTION}\n{context}\nQuestion: {words(2, 8)}?" if i % 3 else f"{_INSTRUCTION}\n{context}"
        out.append(ScoreRequest(f"shared-{i}", prompt, tuple(words(1, 8) for _ in range(2 + i % 3))))
    same = out[1].prompt
    out.append(ScoreRequest("same-prompt-other-choices", same, ("cannot be determined", "the nurse")))
    out.append(ScoreRequest("same-prompt-same-choices", same, out[1].choices))
    out.append(ScoreRequest("unshared", words(30, 60), ("yes", "no", "maybe")))
    out.append(ScoreRequest("short-unshared", "Why?", ("because", "no reason")))
    return out


def _chat_ids_with_system(tokenizer, prompt: str, system: str | None) -> list[int]:
    messages = [{"role": "system", "content": system}] if system else []
    encoded = tokenizer.apply_chat_template(
        messages + [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True
    )
    return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)


@pytest.fixture(scope="module", params=[None, "You are a careful assistant who answers briefly."])
def shared_reference(request, loaded):
    """(system prompt, naive sums and counts per question of :func:`_shared_questions`)."""
    _, model, tokenizer = loaded
    ref = {}
    for q in _shared_questions():
        prompt_ids = _chat_ids_with_system(tokenizer, q.prompt, request.param)
        choice_ids = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in q.choices]
        ref[q.question_id] = (_naive_scores(model, prompt_ids, choice_ids), [len(c) for c in choice_ids])
    return request.param, ref


def _engine(loaded, system: str | None = None, **options) -> HFEngine:
    engine = loaded[0]
    budget = options.pop("max_batch_tokens", 8192)
    config = EngineConfig(max_batch_tokens=budget, system_prompt=system, options=options)
    return HFEngine(engine.model, engine.tokenizer, config, model_path="shared")


def _assert_exact(results, questions, ref) -> float:
    assert [r.question_id for r in results] == [q.question_id for q in questions]
    worst = 0.0
    for q, r in zip(questions, results):
        assert r.error is None, r.error
        sums, counts = ref[q.question_id]
        assert list(r.num_tokens) == counts
        worst = max(worst, *(abs(a - b) for a, b in zip(r.logprob_sums, sums)))
    assert worst < TOL, f"max |diff| {worst:.2e}"
    return worst


@pytest.mark.parametrize("budget", [1, 300, 8192])
@pytest.mark.parametrize("share", [True, False])
def test_prefix_sharing_is_exact(loaded, shared_reference, budget: int, share: bool) -> None:
    system, ref = shared_reference
    variant = _engine(loaded, system, max_batch_tokens=budget, share_prefixes=share)
    questions = _shared_questions()
    seen, handle = _forward_batches(variant)
    try:
        results = variant.score_choices(questions)
    finally:
        handle.remove()
    _assert_exact(results, questions, ref)
    rows = sum(int(b.shape[0]) for b in seen)
    if share and budget > 1:
        assert rows < len(questions) / 2  # questions really share rows
        assert variant.info().extra["share_prefixes"] == "true"
    else:
        assert rows == len(questions)
    if not share:
        assert variant.info().extra["share_prefixes"] == "false"


def test_prefix_sharing_single_question_and_shuffled_order(loaded, shared_reference) -> None:
    system, ref = shared_reference
    variant = _engine(loaded, system)
    questions = _shared_questions()
    _assert_exact(variant.score_choices(questions[3:4]), questions[3:4], ref)
    shuffled = questions[:]
    random.Random(2).shuffle(shuffled)
    _assert_exact(variant.score_choices(shuffled), shuffled, ref)


def test_scorer_on_raw_trees_prefix_prompts_and_empty_suffixes(loaded) -> None:
    """Groups that rendered chat prompts never produce: a prompt that is a prefix of another."""
    from ray_bench.engines.packing import pack_group

    engine, model, _ = loaded
    rng = random.Random(4)
    vocab = model.config.vocab_size
    base = [rng.randrange(10, vocab) for _ in range(40)]
    prompts = [base[:20], base, base[:20], base[:33] + [5, 6], [7, 8, 9], base[:1]]
    choices = [[[rng.randrange(10, vocab) for _ in range(rng.randint(1, 5))] for _ in range(3)] for _ in prompts]
    groups = [[0, 1, 2, 3, 5], [4], [1], [0, 1]]
    rows = [pack_group([prompts[i] for i in g], [choices[i] for i in g]) for g in groups]
    out = engine.scorer.score(rows)
    worst = 0.0
    for g, row_out in zip(groups, out):
        for i, (sums, counts) in zip(g, row_out):
            assert list(counts) == [len(c) for c in choices[i]]
            expected = _naive_scores(model, prompts[i], choices[i])
            worst = max(worst, *(abs(a - b) for a, b in zip(sums, expected)))
    assert worst < TOL, f"max |diff| {worst:.2e}"


def test_bad_question_does_not_poison_its_group(loaded, shared_reference, monkeypatch) -> None:
    system, ref = shared_reference
    variant = _engine(loaded, system)
    questions = _shared_questions()
    bad = variant._pack(questions[5])
    bad_choice = bad.input_ids[-bad.num_tokens[-1] :]
    original = variant.scorer.score
    calls: list[list[int]] = []

    def flaky(batch):
        calls.append([len(row.choices_per_question) for row in batch])
        for row in batch:
            if any(tuple(row.input_ids[i : i + len(bad_choice)]) == bad_choice for i in range(row.length)):
                raise RuntimeError("simulated kernel failure")
        return original(batch)

    monkeypatch.setattr(variant.scorer, "score", flaky)
    results = variant.score_choices(questions)
    by_id = {r.question_id: r for r in results}
    assert by_id[questions[5].question_id].error == "RuntimeError: simulated kernel failure"
    # The failing group was scored as a row of its own, then question by question.
    assert any(len(c) == 1 and c[0] > 1 for c in calls) and calls[-1] == [1]
    good = [q for q in questions if q.question_id != questions[5].question_id]
    _assert_exact([by_id[q.question_id] for q in good], good, ref)


def test_sharing_options_are_validated_and_reported(loaded) -> None:
    from ray_bench.errors import ConfigError

    info = _engine(loaded, min_shared_tokens=4, max_row_tokens=512).info().extra
    assert info["share_prefixes"] == "true" and info["min_shared_tokens"] == "4" and info["max_row_tokens"] == "512"
    assert 0 < float(info["attention_pair_cost"]) < 0.1
    assert _engine(loaded, max_batch_tokens=300).info().extra["max_row_tokens"] == "300"
    for bad in ({"share_prefixes": "no"}, {"min_shared_tokens": 0}, {"max_row_tokens": 1.5}):
        with pytest.raises(ConfigError):
            _engine(loaded, **bad)


def test_prefix_sharing_eager_and_full_logits_paths(loaded, shared_reference) -> None:
    """The additive float mask (eager) and the full-logits fallback on shared rows."""
    system, ref = shared_reference
    engine = loaded[0]
    eager_model = transformers.AutoModelForCausalLM.from_pretrained(
        engine.model_path, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    config = EngineConfig(max_batch_tokens=700, system_prompt=system)
    eager = HFEngine(eager_model, engine.tokenizer, config, model_path="eager")
    assert not eager.scorer.bool_mask
    full = HFEngine(engine.model, engine.tokenizer, config, model_path="full")
    full.scorer.split = None
    questions = _shared_questions()
    for variant in (eager, full):
        _assert_exact(variant.score_choices(questions), questions, ref)


def test_attention_pair_cost_from_config() -> None:
    from types import SimpleNamespace

    from ray_bench.engines.hf_scoring import attention_pair_cost

    cfg = SimpleNamespace(hidden_size=256, num_attention_heads=4, intermediate_size=1024, num_key_value_heads=2)
    # Per layer: pair 4*256 FLOPs; token 2 * (2*256*256 + 2*256*128 + 3*256*1024) FLOPs.
    assert attention_pair_cost(SimpleNamespace(config=cfg)) == pytest.approx(1024 / (2 * 983_040))
    assert attention_pair_cost(SimpleNamespace(config=SimpleNamespace(hidden_size=8))) == 0.0
