"""The choice-scoring benchmark behind ``ray-bench bench scoring``.

In one run, on one question set and one random-weight model, it times the reference
approach, naive batching and the HF engine (:mod:`ray_bench.bench.approaches`), reports
throughput, forward tokens, speedups and model-FLOPs utilization against a matmul peak
measured in the same run, and checks that the engine's numbers equal the reference's.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray_bench.bench.approaches import RunResult, Tokenized, merge, run_engine, run_naive_batched, run_reference
from ray_bench.bench.flops import flop_model_of, measure_peak_flops, packed_flops, separate_sequence_flops
from ray_bench.bench.models import ModelShape, build_random_model, count_parameters
from ray_bench.engines.base import ScoreRequest
from ray_bench.errors import ConfigError

#: (absolute, relative) tolerance of the exactness check per dtype; fp32 is the contract.
TOLERANCES = {"float32": (1e-5, 0.0), "bfloat16": (5e-2, 1e-2), "float16": (5e-2, 1e-2)}

WARMUP_QUESTIONS = 3
#: Questions per round; the approaches alternate round by round.
ROUND_QUESTIONS = 60


@dataclass(frozen=True)
class ScoringBenchOptions:
    """Inputs of one benchmark run.

    Attributes:
        shape: Model architecture (random weights).
        questions: How many questions to score.
        dtype: ``auto`` (fp32 on CPU, bf16 on CUDA), ``float32``, ``bfloat16``, ``float16``.
        device: ``auto``, ``cpu`` or ``cuda``.
        max_batch_tokens: Token budget per forward for naive batching and the engine;
            ``None`` is 2048 on CPU (cache-sized activations) and 16384 on CUDA.
        seed: Seeds the model weights and the synthetic questions.
        data_dir: Prepared datasets directory; ``None`` uses synthetic questions.
        dataset: Dataset name inside ``data_dir``.
        tokenizer: Tokenizer directory; ``None`` trains the demo tokenizer in a temp dir.
        reference_questions: Score only this many questions with the slow reference
            (speedups are per question, so they stay comparable); ``None`` means all.
    """

    shape: ModelShape = field(default_factory=ModelShape)
    questions: int = 180
    dtype: str = "auto"
    device: str = "auto"
    max_batch_tokens: int | None = None
    seed: int = 0
    data_dir: Path | None = None
    dataset: str | None = None
    tokenizer: Path | None = None
    reference_questions: int | None = None


@dataclass
class ScoringBenchReport:
    """Everything the benchmark measured; :meth:`as_dict` is the ``--json`` output."""

    setup: dict[str, Any]
    runs: dict[str, dict[str, float]]
    speedup_vs_reference: float
    speedup_vs_naive: float
    peak_flops: float
    exactness: dict[str, Any]

    @property
    def passed(self) -> bool:
        """Whether the engine matched the reference within tolerance."""
        return bool(self.exactness["passed"])

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "setup": self.setup,
            "runs": self.runs,
            "speedup_engine_vs_reference": self.speedup_vs_reference,
            "speedup_engine_vs_naive_batched": self.speedup_vs_naive,
            "peak_flops": self.peak_flops,
            "exactness": self.exactness,
        }


def _load_tokenizer(path: Path | None, workdir: Path) -> Any:
    from transformers import AutoTokenizer

    if path is None:
        from ray_bench.demo.tiny import build_tokenizer

        path = build_tokenizer(workdir / "tokenizer")
    return AutoTokenizer.from_pretrained(str(path))


def _requests(opts: ScoringBenchOptions) -> list[ScoreRequest]:
    if opts.data_dir is not None:
        from ray_bench.bench.questions import dataset_questions

        return dataset_questions(opts.data_dir, opts.dataset or "", opts.questions)
    from ray_bench.bench.questions import synthetic_questions

    return synthetic_questions(opts.questions, seed=opts.seed)


@dataclass
class _Workload:
    """The model, engine and questions shared by the three approaches."""

    model: Any
    engine: Any
    device: Any
    dtype: Any
    budget: int
    requests: list[ScoreRequest]
    tokenized: list[Tokenized]
    n_ref: int


def run_scoring_benchmark(opts: ScoringBenchOptions, log: Any = None) -> ScoringBenchReport:
    """Build the model, run the three approaches on the same questions and compare them.

    Args:
        opts: What to run.
        log: Optional ``callable(str)`` for progress lines.
    """
    say = log or (lambda _msg: None)
    work = _prepare(opts, say)
    try:
        load_before = _load_average()
        results, peak = _timed_rounds(work, say)
        return _report(opts, work, results, peak, load_before)
    finally:
        work.engine.close()


def _prepare(opts: ScoringBenchOptions, say: Any) -> _Workload:
    from ray_bench.config import EngineConfig
    from ray_bench.engines.hf import HFEngine, resolve_device, resolve_dtype
    from ray_bench.engines.prompts import score_spans

    device = resolve_device(opts.device)
    dtype = resolve_dtype(opts.dtype, device)
    budget = opts.max_batch_tokens or default_batch_tokens(device)
    with tempfile.TemporaryDirectory(prefix="rb-bench-") as tmp:
        tokenizer = _load_tokenizer(opts.tokenizer, Path(tmp))
    if len(tokenizer) > opts.shape.vocab:
        raise ConfigError(f"tokenizer has {len(tokenizer)} tokens but the model vocab is only {opts.shape.vocab}")
    requests = _requests(opts)
    say(f"building a random {opts.shape.arch} model on {device} ({dtype})")
    model = build_random_model(opts.shape, dtype=dtype, device=device, seed=opts.seed)
    config = EngineConfig(name="hf", dtype=opts.dtype, device=opts.device, max_batch_tokens=budget)
    engine = HFEngine(model, tokenizer, config, model_path=f"random:{opts.shape.arch}")
    tokenized = [Tokenized(*score_spans(tokenizer, r.prompt, r.choices)) for r in requests]
    n_ref = min(len(requests), opts.reference_questions or len(requests))
    return _Workload(model, engine, device, dtype, budget, requests, tokenized, n_ref)


def _timed_rounds(w: _Workload, say: Any) -> tuple[dict[str, RunResult], float]:
    """Time the approaches round by round, alternating their order.

    On a shared machine another process's load spike then hits all three alike instead
    of whichever approach happened to run at the time. The peak is re-measured every
    round and the best value is kept.
    """
    say("warming up")
    warm = slice(0, WARMUP_QUESTIONS)
    run_reference(w.model, w.tokenized[warm], w.device)
    run_naive_batched(w.model, w.tokenized[warm], w.budget, w.engine.pad_id, w.device)
    run_engine(w.engine, w.requests[warm], w.tokenized[warm])
    peaks: list[float] = []
    parts: dict[str, list[RunResult]] = {"reference": [], "naive-batched": [], "engine": []}
    bounds = list(range(0, len(w.requests), ROUND_QUESTIONS)) + [len(w.requests)]
    for rnd, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        say(f"round {rnd + 1}/{len(bounds) - 1}: questions {lo}-{hi - 1}")
        peaks.append(measure_peak_flops(w.dtype, w.device))
        steps = [
            ("reference", lambda: run_reference(w.model, w.tokenized[lo : min(hi, w.n_ref)], w.device)),
            ("naive-batched", lambda: run_naive_batched(w.model, w.tokenized[lo:hi], w.budget, w.engine.pad_id, w.device)),
            ("engine", lambda: run_engine(w.engine, w.requests[lo:hi], w.tokenized[lo:hi])),
        ]
        for name, step in steps if rnd % 2 == 0 else steps[::-1]:
            if name != "reference" or lo < w.n_ref:
                parts[name].append(step())
    return {k: merge(v) for k, v in parts.items()}, max(peaks)


def _report(
    opts: ScoringBenchOptions, w: _Workload, results: dict[str, RunResult], peak: float, load_before: float | None
) -> ScoringBenchReport:
    params = count_parameters(w.model)
    fm = flop_model_of(w.model, params["layers"])
    flops = {
        "reference": separate_sequence_flops(fm, w.tokenized[: w.n_ref]),
        "naive-batched": separate_sequence_flops(fm, w.tokenized),
        "engine": packed_flops(fm, w.tokenized),
    }
    runs = {name: _summarize(r, flops[name], peak) for name, r in results.items()}
    dtype_name = str(w.dtype).replace("torch.", "")
    n = max(1, len(w.tokenized))
    setup = {
        "model_shape": opts.shape.as_dict(),
        "parameters": params["total"],
        "dtype": dtype_name,
        "device": str(w.device),
        "torch_threads": _threads(w.device),
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": _load_average(),
        "max_batch_tokens": w.budget,
        "questions": len(w.requests),
        "reference_questions": w.n_ref,
        "round_questions": ROUND_QUESTIONS,
        "source": f"{opts.data_dir}/{opts.dataset}" if opts.data_dir else f"synthetic (seed {opts.seed})",
        "mean_prompt_tokens": sum(len(t.prompt_ids) for t in w.tokenized) / n,
        "mean_choice_tokens": _mean_choice_tokens(w.tokenized),
        "mean_choices": sum(len(t.choice_ids) for t in w.tokenized) / n,
        "engine_info": w.engine.info().extra,
    }
    tol = TOLERANCES.get(dtype_name, TOLERANCES["bfloat16"])
    return ScoringBenchReport(
        setup=setup,
        runs=runs,
        speedup_vs_reference=runs["engine"]["questions_per_s"] / runs["reference"]["questions_per_s"],
        speedup_vs_naive=runs["engine"]["questions_per_s"] / runs["naive-batched"]["questions_per_s"],
        peak_flops=peak,
        exactness=_exactness(results["reference"], results["engine"], results["naive-batched"], tol),
    )


def default_batch_tokens(device: Any) -> int:
    """Token budget when none is given: small on CPU, where activations should stay in cache."""
    return 16384 if getattr(device, "type", "cpu") == "cuda" else 2048


def _load_average() -> float | None:
    """1-minute load average: other processes on the machine distort CPU timings."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _threads(device: Any) -> int:
    import torch

    return torch.get_num_threads() if getattr(device, "type", "cpu") == "cpu" else 0


def _mean_choice_tokens(tokenized: list[Tokenized]) -> float:
    lens = [len(c) for t in tokenized for c in t.choice_ids]
    return sum(lens) / max(1, len(lens))


def _summarize(run: RunResult, flops: float, peak: float) -> dict[str, float]:
    q = max(1, run.questions)
    return {
        "questions": run.questions,
        "seconds": run.seconds,
        "questions_per_s": run.questions / run.seconds if run.seconds > 0 else float("inf"),
        "forward_tokens_per_question": run.padded_tokens / q,
        "real_tokens_per_question": run.real_tokens / q,
        "logit_rows_per_question": run.logit_rows / q,
        "forwards": run.forwards,
        "model_gflop_per_question": flops / q / 1e9,
        "mfu": (flops / run.seconds) / peak if run.seconds > 0 else 0.0,
    }


def _exactness(ref: RunResult, ours: RunResult, naive: RunResult, tol: tuple[float, float]) -> dict[str, Any]:
    """Max |engine - reference| (and naive - reference) over every choice the reference scored."""
    atol, rtol = tol
    worst = worst_naive = 0.0
    within = counts_equal = True
    agree = 0
    for i, (r_sums, r_counts) in enumerate(zip(ref.sums, ref.counts)):
        counts_equal &= tuple(ours.counts[i]) == tuple(r_counts)
        for a, c, b in zip(r_sums, ours.sums[i], naive.sums[i]):
            worst = max(worst, abs(c - a))
            worst_naive = max(worst_naive, abs(b - a))
            within &= abs(c - a) <= atol + rtol * abs(a)
        ref_means = [s / n for s, n in zip(r_sums, r_counts)]
        our_means = [s / n for s, n in zip(ours.sums[i], ours.counts[i])]
        agree += ref_means.index(max(ref_means)) == our_means.index(max(our_means))
    return {
        "max_abs_diff_engine_vs_reference": worst,
        "max_abs_diff_naive_vs_reference": worst_naive,
        "token_counts_equal": counts_equal,
        "prediction_agreement": agree / max(1, len(ref.sums)),
        "atol": atol,
        "rtol": rtol,
        "passed": bool(within and counts_equal),
    }
