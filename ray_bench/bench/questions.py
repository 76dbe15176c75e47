"""Closed questions for the scoring benchmark: seeded synthetic ones or prepared Parquet."""

from __future__ import annotations

import random
from pathlib import Path

from ray_bench.engines.base import ScoreRequest
from ray_bench.errors import ConfigError


def _vocabulary() -> list[str]:
    from ray_bench.demo.tiny import default_corpus

    words = sorted({w.strip(".,?!").lower() for s in default_corpus(400, seed=11) for w in s.split()})
    return [w for w in words if w]


def synthetic_questions(
    n: int,
    *,
    seed: int = 0,
    prompt_words: tuple[int, int] = (50, 135),
    choice_words: tuple[int, int] = (3, 13),
    num_choices: int = 3,
) -> list[ScoreRequest]:
    """``n`` seeded closed questions shaped like bias-benchmark items.

    With the demo tokenizer a word is about 1.1 tokens, and the chat template adds about 6,
    so prompts land near 60-150 tokens and choices near 3-15 tokens.
    """
    rng = random.Random(seed)
    vocab = _vocabulary()

    def words(bounds: tuple[int, int]) -> str:
        return " ".join(rng.choice(vocab) for _ in range(rng.randint(*bounds)))

    out = []
    for i in range(n):
        prompt = words(prompt_words).capitalize() + "? Answer with one of the options."
        choices = tuple(words(choice_words) for _ in range(num_choices))
        out.append(ScoreRequest(f"synthetic-{i}", prompt, choices))
    return out


def dataset_questions(data_dir: Path, dataset: str, n: int) -> list[ScoreRequest]:
    """The first ``n`` closed questions of a prepared dataset (``ray-bench datasets prepare``).

    Raises:
        ConfigError: the dataset has no closed questions.
    """
    # Imported here: the datasets package is optional for the synthetic default.
    from ray_bench.datasets import read_questions

    table = read_questions(data_dir, dataset)
    rows = table.select(["question_id", "kind", "prompt", "choices"]).to_pylist()
    closed = [r for r in rows if r["kind"] == "closed" and r["choices"]]
    if not closed:
        raise ConfigError(
            f"dataset {dataset!r} in {str(data_dir)!r} has no closed questions to score",
            hint="Pick a closed dataset such as BBQ, StereoSet or CEB-Recognition-S.",
        )
    return [ScoreRequest(r["question_id"], r["prompt"], tuple(r["choices"])) for r in closed[:n]]
