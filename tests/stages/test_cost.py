"""Cost estimates against a naive per-question rendering with the same tokenizer."""

import pytest

pytest.importorskip("transformers")

from ray_bench.config import EngineConfig, ModelSpec  # noqa: E402
from ray_bench.stages.cost import Throughput, estimate_costs  # noqa: E402
from tests.runner.conftest import make_questions  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from ray_bench.demo.tiny import build_tokenizer

    return build_tokenizer(tmp_path_factory.mktemp("tok"))


def _naive(tokenizer_dir, table, max_new_tokens):
    from transformers import AutoTokenizer

    from ray_bench.engines.prompts import build_messages, render_prompt, score_spans

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    prompt = choice = forward = unshared = decode = 0
    for row in table.to_pylist():
        if row["kind"] == "closed":
            p, cs = score_spans(tok, row["prompt"], row["choices"])
            prompt += len(p)
            choice += sum(map(len, cs))
            forward += len(p) + sum(map(len, cs))
            unshared += sum(len(p) + len(c) for c in cs)
        else:
            turns = row["turns"] or [row["prompt"]]
            n = sum(len(render_prompt(tok, build_messages([t]))[0]) for t in turns)
            prompt += n
            forward += n
            unshared += n
            decode += max_new_tokens * len(turns)
    return prompt, choice, forward, unshared, decode


def test_counts_equal_a_naive_rendering_of_every_question(tokenizer_dir):
    table = make_questions(7, 3)
    model = ModelSpec(name="m", path=str(tokenizer_dir))
    (cost,) = estimate_costs([model], EngineConfig(max_new_tokens=50), {"Toy": table}, {("m", "Toy"): table.num_rows})
    got = (cost.prompt_tokens, cost.choice_tokens, cost.forward_tokens, cost.unshared_forward_tokens,
           cost.decode_tokens_max)
    assert got == _naive(tokenizer_dir, table, 50)
    assert cost.tokenizer.endswith("tokenizer") and cost.questions == cost.pending == 10


def test_pending_scales_and_models_sharing_a_tokenizer_are_counted_once(tokenizer_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tokenizer_dir, copy)
    table = make_questions(8, 0)
    models = [ModelSpec(name="a", path=str(tokenizer_dir)), ModelSpec(name="b", path=str(copy))]
    a, b = estimate_costs(models, EngineConfig(), {"Toy": table}, {("a", "Toy"): 8, ("b", "Toy"): 2})
    assert b.forward_tokens == round(a.forward_tokens * 2 / 8) and b.pending == 2


def test_without_a_tokenizer_four_characters_per_token_and_gpu_hours():
    table = make_questions(0, 2)
    (cost,) = estimate_costs([ModelSpec(name="h", path="org/not-here")], EngineConfig(max_new_tokens=10),
                             {"Toy": table}, {("h", "Toy"): 2})
    assert cost.tokenizer.startswith("estimated at 4 characters/token") and cost.decode_tokens_max == 10 * 3
    assert Throughput(1000.0, 10.0).gpu_hours(3_600_000, 36_000) == pytest.approx(1.0 + 1.0)
    assert Throughput(1000.0, None).gpu_hours(100, 5) is None and Throughput(None, None).gpu_hours(1, 0) is None
