"""What the scoring benchmark reports: per-approach summaries, speedups and exactness."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ray_bench.bench.approaches import RunResult, Tokenized
from ray_bench.engines.packing import common_prefix_length

#: Approaches in table order, with their labels (the vLLM ones only with ``--engine vllm``).
APPROACHES = {
    "reference": "(a) one prompt+choice per forward, batch 1",
    "naive-batched": "(b) prompt+choice rows, padded batches",
    "engine": "(c) hf engine: shared prefixes once (tree)",
    "engine-no-sharing": "(d) hf engine, no cross-question sharing",
    "vllm": "(e) vllm engine, default method (auto)",
    "vllm-uncached": "(f) vllm engine, prompt_logprobs_uncached",
}

#: Approaches whose sums must equal the reference's; naive batching is shown for scale.
CHECKED = ("engine", "engine-no-sharing", "vllm", "vllm-uncached")
#: Key fragment of each approach in the exactness dict (``max_abs_diff_<key>_vs_reference``).
EXACTNESS_KEYS = {
    "engine": "engine",
    "engine-no-sharing": "no_sharing",
    "naive-batched": "naive",
    "vllm": "vllm",
    "vllm-uncached": "vllm_uncached",
}

#: Speedups reported, as (key, faster approach, slower approach); those whose approaches
#: did not run are left out.
SPEEDUPS = (
    ("c/a", "engine", "reference"),
    ("c/b", "engine", "naive-batched"),
    ("d/a", "engine-no-sharing", "reference"),
    ("d/b", "engine-no-sharing", "naive-batched"),
    ("c/d", "engine", "engine-no-sharing"),
    ("e/c", "vllm", "engine"),
    ("e/d", "vllm", "engine-no-sharing"),
    ("f/b", "vllm-uncached", "naive-batched"),
    ("e/f", "vllm", "vllm-uncached"),
)


@dataclass
class ScoringBenchReport:
    """Everything the benchmark measured; :meth:`as_dict` is the ``--json`` output."""

    setup: dict[str, Any]
    runs: dict[str, dict[str, float]]
    speedups: dict[str, float]
    peak_flops: float
    exactness: dict[str, Any]

    @property
    def passed(self) -> bool:
        """Whether every engine approach matched the reference within tolerance."""
        return bool(self.exactness["passed"])

    @property
    def speedup_vs_reference(self) -> float:
        """c/a: the engine's questions/s over the reference's."""
        return self.speedups["c/a"]

    @property
    def speedup_vs_naive(self) -> float:
        """c/b: the engine's questions/s over naive batching's."""
        return self.speedups["c/b"]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "setup": self.setup,
            "runs": self.runs,
            "speedups": self.speedups,
            "speedup_engine_vs_reference": self.speedups["c/a"],
            "speedup_engine_vs_naive_batched": self.speedups["c/b"],
            "peak_flops": self.peak_flops,
            "exactness": self.exactness,
        }


def speedups(runs: dict[str, dict[str, float]]) -> dict[str, float]:
    """Ratios of questions/s between approaches (:data:`SPEEDUPS` whose approaches ran)."""
    return {
        key: runs[fast]["questions_per_s"] / runs[slow]["questions_per_s"]
        for key, fast, slow in SPEEDUPS
        if fast in runs and slow in runs
    }


def best_repeat(repeats: Sequence[RunResult]) -> int:
    """Index of the fastest repeat (the first on ties): the least disturbed by other load."""
    if not repeats:
        raise ValueError("an approach needs at least one timed repeat")
    return min(range(len(repeats)), key=lambda i: repeats[i].seconds)


def summarize_repeats(repeats: Sequence[RunResult], flops: float, peak: float) -> dict[str, Any]:
    """:func:`summarize` of the best repeat, plus every repeat's seconds (the spread)."""
    best = best_repeat(repeats)
    return {
        **summarize(repeats[best], flops, peak),
        "best_repeat": best,
        "repeat_seconds": [r.seconds for r in repeats],
    }


def summarize(run: RunResult, flops: float, peak: float) -> dict[str, float]:
    """Throughput, work per question and MFU of one approach."""
    q = max(1, run.questions)
    return {
        "questions": run.questions,
        "seconds": run.seconds,
        "questions_per_s": run.questions / run.seconds if run.seconds > 0 else float("inf"),
        "forward_tokens_per_question": run.padded_tokens / q,
        "real_tokens_per_question": run.real_tokens / q,
        "logit_rows_per_question": run.logit_rows / q,
        "forwards": run.forwards,
        "cached_tokens_per_question": run.cached_tokens / q,
        "resent": run.resent,
        "model_gflop_per_question": flops / q / 1e9,
        "mfu": (flops / run.seconds) / peak if run.seconds > 0 else 0.0,
    }


def shared_prefix_fraction(questions: Sequence[Tokenized]) -> float:
    """Share of prompt tokens equal to the sorted previous prompt's (what sharing can skip)."""
    prompts = sorted(q.prompt_ids for q in questions)
    total = sum(len(p) for p in prompts)
    shared = sum(common_prefix_length(a, b) for a, b in zip(prompts, prompts[1:]))
    return shared / total if total else 0.0


def exactness(results: dict[str, RunResult], tol: tuple[float, float]) -> dict[str, Any]:
    """Max |x - reference| per approach over every choice the reference scored.

    Every approach of :data:`CHECKED` that ran must be within ``atol + rtol * |reference|``
    with equal token counts; naive batching is reported for scale only.
    """
    atol, rtol = tol
    ref = results["reference"]
    out: dict[str, Any] = {"atol": atol, "rtol": rtol, "token_counts_equal": True}
    passed = True
    agreement: dict[str, float] = {}
    for name, key in EXACTNESS_KEYS.items():
        if name not in results:
            continue
        worst, within, counts_equal = _diff(ref, results[name], atol, rtol)
        out[f"max_abs_diff_{key}_vs_reference"] = worst
        agreement[name] = _agreement(ref, results[name])
        if name in CHECKED:
            out["token_counts_equal"] &= counts_equal
            passed &= within and counts_equal
    out["prediction_agreement"] = agreement["engine"]
    out["prediction_agreement_by_approach"] = agreement
    out["passed"] = bool(passed)
    return out


def _diff(ref: RunResult, ours: RunResult, atol: float, rtol: float) -> tuple[float, bool, bool]:
    """(max |ours - ref|, all within tolerance, token counts equal) over the reference's questions."""
    worst, within, counts_equal = 0.0, True, True
    for i, (r_sums, r_counts) in enumerate(zip(ref.sums, ref.counts)):
        counts_equal &= tuple(ours.counts[i]) == tuple(r_counts)
        for a, c in zip(r_sums, ours.sums[i]):
            worst = max(worst, abs(c - a))
            within &= abs(c - a) <= atol + rtol * abs(a)
    return worst, within, counts_equal


def _agreement(ref: RunResult, ours: RunResult) -> float:
    agree = 0
    for i, (r_sums, r_counts) in enumerate(zip(ref.sums, ref.counts)):
        ref_means = [s / n for s, n in zip(r_sums, r_counts)]
        our_means = [s / n for s, n in zip(ours.sums[i], ours.counts[i])]
        agree += ref_means.index(max(ref_means)) == our_means.index(max(our_means))
    return agree / max(1, len(ref.sums))
