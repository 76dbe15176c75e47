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
    assert [r.question_id for r in results] == [q.question_id for q in questions]
    worst = 0.0
    for q, res in zip(questions, results):
        assert res.error is None, res.error
        sums, counts = reference[q.question_id]
        assert list(res.num_tokens) == counts
        worst = max(worst, *(abs(a - b) for a, b in zip(res.logprob_sums, sums)))
    assert worst < TOL, f"max |diff| {worst:.2e}"


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
