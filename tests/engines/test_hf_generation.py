"""HF engine generation: greedy vs a manual loop, seeded sampling, multi-turn, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from ray_bench.config import EngineConfig, ModelSpec  # noqa: E402
from ray_bench.engines.base import GenerateRequest  # noqa: E402
from ray_bench.engines.hf import HFEngine, create_hf_engine  # noqa: E402
from ray_bench.engines.hf_generation import DecodeSettings, pick_next  # noqa: E402

MAX_NEW = 12
PROMPTS = ["Hi", "The old man said that the doctor was likely to pay the loan because", "Who was rude?"]


@pytest.fixture(scope="module")
def engine(tiny_llama_dir: Path):
    eng = create_hf_engine(
        ModelSpec(name="llama", path=str(tiny_llama_dir)),
        EngineConfig(device="cpu", max_new_tokens=MAX_NEW, batch_size=8),
    )
    yield eng
    eng.close()


def _variant(engine: HFEngine, **overrides) -> HFEngine:
    cfg = EngineConfig(device="cpu", max_new_tokens=MAX_NEW, **overrides)
    return HFEngine(engine.model, engine.tokenizer, cfg, model_path=engine.model_path)


def _manual_greedy(model, tokenizer, messages: list[dict[str, str]], max_new: int) -> str:
    """Un-batched, cache-free greedy loop: recompute the whole sequence every step."""
    encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)
    out: list[int] = []
    for _ in range(max_new):
        with torch.no_grad():
            logits = model(torch.tensor([ids + out])).logits[0, -1]
        token = int(torch.argmax(logits))
        if token == tokenizer.eos_token_id:
            break
        out.append(token)
    return tokenizer.decode(out, skip_special_tokens=True)


def test_greedy_matches_manual_loop_with_left_padding(engine: HFEngine) -> None:
    requests = [GenerateRequest(f"g{i}", (p,)) for i, p in enumerate(PROMPTS)]
    results = engine.generate(requests)
    assert [r.question_id for r in results] == ["g0", "g1", "g2"]
    for prompt, res in zip(PROMPTS, results):
        assert res.error is None
        expected = _manual_greedy(engine.model, engine.tokenizer, [{"role": "user", "content": prompt}], MAX_NEW)
        assert res.responses == (expected,)
        assert 0 < res.num_output_tokens <= MAX_NEW


def test_seeded_sampling_is_reproducible_across_batch_composition(engine: HFEngine) -> None:
    requests = [GenerateRequest(f"s{i}", (p,)) for i, p in enumerate(PROMPTS)]
    together = _variant(engine, temperature=1.0, seed=7, batch_size=8).generate(requests)
    alone = _variant(engine, temperature=1.0, seed=7, batch_size=1).generate(requests)
    reordered = _variant(engine, temperature=1.0, seed=7).generate(requests[::-1])[::-1]
    assert [r.responses for r in together] == [r.responses for r in alone] == [r.responses for r in reordered]
    other_seed = _variant(engine, temperature=1.0, seed=8).generate(requests)
    greedy = engine.generate(requests)
    assert [r.responses for r in other_seed] != [r.responses for r in together]
    assert [r.responses for r in greedy] != [r.responses for r in together]


def test_top_p_keeps_the_nucleus() -> None:
    logits = torch.log(torch.tensor([0.6, 0.3, 0.05, 0.05]))
    settings = DecodeSettings(temperature=1.0, top_p=0.5, eos_ids=frozenset(), pad_id=0)
    gen = torch.Generator().manual_seed(0)
    assert {pick_next(logits, settings, gen) for _ in range(30)} == {0}
    settings = DecodeSettings(temperature=1.0, top_p=0.8, eos_ids=frozenset(), pad_id=0)
    assert {pick_next(logits, settings, gen) for _ in range(60)} == {0, 1}


def test_multi_turn_answers_each_turn_with_history(engine: HFEngine) -> None:
    turns = ("Hello", "Who was the doctor?", "Why?")
    requests = [
        GenerateRequest("mt", turns),
        GenerateRequest("single", ("Who was rude?",)),
        GenerateRequest("two", turns[:2]),
    ]
    results = engine.generate(requests)
    assert [len(r.responses) for r in results] == [3, 1, 2]
    mt = results[0]
    messages: list[dict[str, str]] = []
    for turn, response in zip(turns, mt.responses):
        messages.append({"role": "user", "content": turn})
        assert response == _manual_greedy(engine.model, engine.tokenizer, messages, MAX_NEW)
        messages.append({"role": "assistant", "content": response})
    assert results[2].responses == mt.responses[:2]
    assert mt.response == mt.responses[-1]


def test_generation_errors_stay_per_request(engine: HFEngine) -> None:
    requests = [
        GenerateRequest("ok", ("Hi",)),
        GenerateRequest("empty", ()),
        GenerateRequest("too-long", (" ".join(["the old man"] * 800),)),
    ]
    ok, empty, too_long = engine.generate(requests)
    assert ok.error is None and ok.responses
    assert empty.error == "request has no user turns" and empty.response is None
    assert "model allows 2048" in too_long.error
