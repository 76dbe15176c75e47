"""Score closed questions on a (quantized) checkpoint and compare it with its base.

Used by the tests and by :mod:`ray_bench.quantize.matrix`. Scoring goes through the
HF engine (``create_engine(..., EngineConfig(name="hf"))``), which loads
compressed-tensors checkpoints through transformers on CPU. When the engine module is
not available, a plain transformers forward over the same token spans
(:func:`ray_bench.engines.prompts.score_spans`) computes the choice log-prob sums.
Everything runs in fp32: bf16 rounding alone is about the size of W8 differences.
"""

from __future__ import annotations

import importlib.util
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from ray_bench.engines.base import ScoreRequest

_SUBJECTS = ["the doctor", "the nurse", "the old man", "the young woman", "the teacher", "the engineer",
             "my neighbor", "the student", "the worker", "the rich person", "the poor person", "a friend"]
_TRAITS = ["smart", "lazy", "honest", "rude", "kind", "good", "bad", "poor", "rich", "helpful"]


def probe_requests(n: int = 24, seed: int = 0) -> list[ScoreRequest]:
    """Deterministic bias-benchmark-like questions over the tiny models' vocabulary."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.sample(_SUBJECTS, 2)
        trait = rng.choice(_TRAITS)
        prompt = f"The question is who was {trait}, {a} or {b}? Please answer."
        out.append(ScoreRequest(f"q{i}", prompt, (a, b, "cannot be determined")))
    return out


@dataclass(frozen=True)
class ScoreComparison:
    """How far a variant's choice scores are from the base model's.

    Attributes:
        mean_abs_diff: Mean |delta| of per-choice log-prob sums (nats).
        max_abs_diff: Largest |delta|.
        rel_diff: sum |delta| / sum |base| over all choices.
        agreement: Share of questions whose top choice is unchanged.
    """

    mean_abs_diff: float
    max_abs_diff: float
    rel_diff: float
    agreement: float


def score_checkpoint(
    path: str, requests: Sequence[ScoreRequest], via: str = "auto", activation_quant: str = "kernel"
) -> list[tuple[float, ...]]:
    """Per request, the choices' log-prob sums (fp32, CPU).

    Args:
        path: Checkpoint directory.
        requests: The questions.
        via: ``hf`` (the HF engine), ``plain`` (transformers forward) or ``auto`` (the
            engine when its module exists).
        activation_quant: The HF engine's option of that name: ``kernel`` quantizes W8A8
            activations as vLLM's int8 kernels do, ``compressed-tensors`` as a plain
            transformers forward does (``engines/hf_quant.py``).
    """
    if via not in ("auto", "hf", "plain"):
        raise ValueError(f"via must be 'auto', 'hf' or 'plain', got {via!r}")
    if via == "hf" or (via == "auto" and importlib.util.find_spec("ray_bench.engines.hf") is not None):
        return _score_with_engine(path, requests, activation_quant)
    return _score_plain(path, requests)


def _score_with_engine(path: str, requests: Sequence[ScoreRequest], activation_quant: str) -> list[tuple[float, ...]]:
    from ray_bench.config import EngineConfig, ModelSpec
    from ray_bench.engines.base import create_engine

    config = EngineConfig(name="hf", dtype="float32", device="cpu", options={"activation_quant": activation_quant})
    engine = create_engine(ModelSpec(name="m", path=path), config)
    try:
        results = engine.score_choices(list(requests))
    finally:
        engine.close()
    errors = [r.error for r in results if r.error is not None]
    if errors:
        raise RuntimeError(f"scoring {path} failed: {errors[0]}")
    return [r.logprob_sums for r in results]


def _score_plain(path: str, requests: Sequence[ScoreRequest]) -> list[tuple[float, ...]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ray_bench.engines.prompts import score_spans

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    out = []
    with torch.inference_mode():
        for req in requests:
            prompt_ids, choices = score_spans(tokenizer, req.prompt, req.choices)
            sums = []
            for ids in choices:
                seq = torch.tensor([prompt_ids + ids])
                logp = torch.log_softmax(model(seq).logits[0, :-1].float(), dim=-1)
                targets = seq[0, len(prompt_ids):]
                rows = torch.arange(len(prompt_ids) - 1, seq.shape[1] - 1)
                sums.append(float(logp[rows, targets].sum()))
            out.append(tuple(sums))
    return out


def compare_scores(base: Sequence[Sequence[float]], other: Sequence[Sequence[float]]) -> ScoreComparison:
    """Compare two score lists of the same questions.

    Raises:
        ValueError: the lists do not have the same shape, or are empty.
    """
    if len(base) != len(other) or not base or any(len(a) != len(b) for a, b in zip(base, other)):
        raise ValueError("score lists must cover the same questions and choices")
    diffs = [abs(x - y) for a, b in zip(base, other) for x, y in zip(a, b)]
    total = sum(abs(x) for a in base for x in a)
    agree = sum(max(range(len(a)), key=a.__getitem__) == max(range(len(b)), key=b.__getitem__)
                for a, b in zip(base, other))
    return ScoreComparison(
        mean_abs_diff=sum(diffs) / len(diffs),
        max_abs_diff=max(diffs),
        rel_diff=sum(diffs) / total if total else math.inf,
        agreement=agree / len(base),
    )
