"""Closed questions for the scoring benchmark: seeded synthetic ones or prepared Parquet."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from ray_bench.engines.base import ScoreRequest
from ray_bench.errors import ConfigError

#: Qwen2.5's default system prompt: its chat template renders it into every prompt that
#: has no system message, so every question starts with the same header.
QWEN_SYSTEM_PROMPT = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


@dataclass(frozen=True)
class SyntheticShape:
    """How the synthetic questions are built (word counts; the demo tokenizer makes ~1.1 tokens a word).

    The structure copies what bias benchmarks share: a dataset uses a handful of fixed
    instructions (CEB, IAT), and a context is asked about by several questions (BBQ's
    two polarities of each context, with and without disambiguation). Questions that
    share a context are consecutive, as in the prepared BBQ data.

    Attributes:
        templates: Fixed instruction texts.
        instruction_words: Length range of each instruction.
        context_words: Length range of each context.
        questions_per_context: How many consecutive questions ask about one context.
        question_words: Length range of the question after the context.
        choice_words: Length range of each choice.
        num_choices: Choices per question.
    """

    templates: int = 4
    instruction_words: tuple[int, int] = (35, 70)
    context_words: tuple[int, int] = (25, 60)
    questions_per_context: tuple[int, int] = (2, 4)
    question_words: tuple[int, int] = (4, 12)
    choice_words: tuple[int, int] = (3, 13)
    num_choices: int = 3

    def describe(self) -> str:
        """One line for the benchmark header."""
        lo, hi = self.questions_per_context
        return (
            f"{self.templates} fixed instructions of {self.instruction_words[0]}-{self.instruction_words[1]} words, "
            f"each context ({self.context_words[0]}-{self.context_words[1]} words) asked by {lo}-{hi} consecutive "
            f"questions, {self.num_choices} random choices of {self.choice_words[0]}-{self.choice_words[1]} words"
        )


def _vocabulary() -> list[str]:
    from ray_bench.demo.tiny import default_corpus

    words = sorted({w.strip(".,?!").lower() for s in default_corpus(400, seed=11) for w in s.split()})
    return [w for w in words if w]


def synthetic_questions(n: int, *, seed: int = 0, shape: SyntheticShape | None = None) -> list[ScoreRequest]:
    """``n`` seeded closed questions with the shared structure of :class:`SyntheticShape`.

    A prompt is ``instruction + context + question``: with the demo tokenizer and its
    chat template that is roughly 80-170 tokens before any system message.
    """
    shape = shape or SyntheticShape()
    rng = random.Random(seed)
    vocab = _vocabulary()

    def words(bounds: tuple[int, int]) -> str:
        return " ".join(rng.choice(vocab) for _ in range(rng.randint(*bounds)))

    instructions = [words(shape.instruction_words).capitalize() + "." for _ in range(shape.templates)]
    out: list[ScoreRequest] = []
    while len(out) < n:
        instruction = rng.choice(instructions)
        context = words(shape.context_words).capitalize() + "."
        for _ in range(rng.randint(*shape.questions_per_context)):
            if len(out) == n:
                break
            prompt = f"{instruction}\n\nContext: {context}\n\nQuestion: {words(shape.question_words)}?"
            choices = tuple(words(shape.choice_words) for _ in range(shape.num_choices))
            out.append(ScoreRequest(f"synthetic-{len(out)}", prompt, choices))
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
