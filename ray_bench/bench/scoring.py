"""The choice-scoring benchmark behind ``ray-bench bench scoring``.

In one run, on one question set and one random-weight model, it times the reference
approach, naive batching and the HF engine with and without cross-question prefix
sharing (:mod:`ray_bench.bench.approaches`), reports throughput, forward tokens,
speedups and model-FLOPs utilization against a matmul peak measured in the same run,
and checks that both engine variants' numbers equal the reference's.

Every approach scores the same token ids: the prompt rendered with the same system
message (by default Qwen2.5's, which its chat template adds to every prompt), so the
reference and naive batching pay for the shared header just as the engine does.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray_bench.bench.approaches import (
    RunResult,
    Tokenized,
    engine_rows,
    merge,
    run_engine,
    run_naive_batched,
    run_reference,
)
from ray_bench.bench.flops import flop_model_of, measure_peak_flops, row_flops, separate_sequence_flops
from ray_bench.bench.models import ModelShape, build_random_model, count_parameters
from ray_bench.bench.questions import QWEN_SYSTEM_PROMPT, SyntheticShape
from ray_bench.bench.report import ScoringBenchReport, exactness, shared_prefix_fraction, speedups, summarize
from ray_bench.config import EngineConfig
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
        system_prompt: System message rendered into every prompt, for every approach;
            ``None`` or empty renders none.
        min_shared_tokens: The engine's ``min_shared_tokens`` option (``None``: its default).
        max_row_tokens: The engine's ``max_row_tokens`` option (``None``: its default).
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
    system_prompt: str | None = QWEN_SYSTEM_PROMPT
    min_shared_tokens: int | None = None
    max_row_tokens: int | None = None


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
    """The model, engines and questions shared by the approaches."""

    model: Any
    engines: dict[str, Any]
    device: Any
    dtype: Any
    budget: int
    requests: list[ScoreRequest]
    tokenized: list[Tokenized]
    n_ref: int
    system_tokens: int

    @property
    def pad_id(self) -> int:
        return self.engines["engine"].pad_id


def run_scoring_benchmark(opts: ScoringBenchOptions, log: Any = None) -> ScoringBenchReport:
    """Build the model, run the approaches on the same questions and compare them.

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
        for engine in work.engines.values():
            engine.close()


def _prepare(opts: ScoringBenchOptions, say: Any) -> _Workload:
    from ray_bench.engines.hf import resolve_device, resolve_dtype
    from ray_bench.engines.prompts import score_spans

    device = resolve_device(opts.device)
    dtype = resolve_dtype(opts.dtype, device)
    budget = EngineConfig(max_batch_tokens=opts.max_batch_tokens).batch_budget(getattr(device, "type", "cpu"))
    with tempfile.TemporaryDirectory(prefix="rb-bench-") as tmp:
        tokenizer = _load_tokenizer(opts.tokenizer, Path(tmp))
    if len(tokenizer) > opts.shape.vocab:
        raise ConfigError(f"tokenizer has {len(tokenizer)} tokens but the model vocab is only {opts.shape.vocab}")
    requests = _requests(opts)
    say(f"building a random {opts.shape.arch} model on {device} ({dtype})")
    model = build_random_model(opts.shape, dtype=dtype, device=device, seed=opts.seed)
    system = opts.system_prompt or None
    engines = {
        "engine": _engine(model, tokenizer, opts, budget, system, share=True),
        "engine-no-sharing": _engine(model, tokenizer, opts, budget, system, share=False),
    }
    tokenized = [Tokenized(*score_spans(tokenizer, r.prompt, r.choices, system)) for r in requests]
    n_ref = min(len(requests), opts.reference_questions or len(requests))
    system_tokens = 0
    if system and requests:
        bare = score_spans(tokenizer, requests[0].prompt, requests[0].choices)[0]
        system_tokens = len(tokenized[0].prompt_ids) - len(bare)
    return _Workload(model, engines, device, dtype, budget, requests, tokenized, n_ref, system_tokens)


def _engine(model: Any, tokenizer: Any, opts: ScoringBenchOptions, budget: int, system: str | None, *, share: bool) -> Any:
    from ray_bench.engines.hf import HFEngine

    options: dict[str, Any] = {"share_prefixes": share}
    if opts.min_shared_tokens is not None:
        options["min_shared_tokens"] = opts.min_shared_tokens
    if opts.max_row_tokens is not None:
        options["max_row_tokens"] = opts.max_row_tokens
    config = EngineConfig(
        name="hf", dtype=opts.dtype, device=opts.device, max_batch_tokens=budget, system_prompt=system, options=options
    )
    return HFEngine(model, tokenizer, config, model_path=f"random:{opts.shape.arch}")


def _timed_rounds(w: _Workload, say: Any) -> tuple[dict[str, RunResult], float]:
    """Time the approaches round by round, alternating their order.

    On a shared machine another process's load spike then hits every approach alike
    instead of whichever happened to run at the time. The peak is re-measured every
    round and the best value is kept. Each engine call gets one round's questions, so
    prefixes are shared only within a round (the runner calls it per shard).
    """
    say("warming up")
    warm = slice(0, WARMUP_QUESTIONS)
    run_reference(w.model, w.tokenized[warm], w.device)
    run_naive_batched(w.model, w.tokenized[warm], w.budget, w.pad_id, w.device)
    for name, engine in w.engines.items():
        run_engine(engine, w.requests[warm], w.tokenized[warm], name)
    peaks: list[float] = []
    parts: dict[str, list[RunResult]] = {"reference": [], "naive-batched": [], **{name: [] for name in w.engines}}
    bounds = list(range(0, len(w.requests), ROUND_QUESTIONS)) + [len(w.requests)]
    for rnd, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        say(f"round {rnd + 1}/{len(bounds) - 1}: questions {lo}-{hi - 1}")
        peaks.append(measure_peak_flops(w.dtype, w.device))
        steps = [
            ("reference", lambda: run_reference(w.model, w.tokenized[lo : min(hi, w.n_ref)], w.device)),
            ("naive-batched", lambda: run_naive_batched(w.model, w.tokenized[lo:hi], w.budget, w.pad_id, w.device)),
        ]
        steps += [
            (name, lambda name=name, e=engine: run_engine(e, w.requests[lo:hi], w.tokenized[lo:hi], name))
            for name, engine in w.engines.items()
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
    }
    for name, engine in w.engines.items():
        # Per round, as the engine was called, so the FLOPs match the sharing it could do.
        chunks = range(0, len(w.tokenized), ROUND_QUESTIONS)
        flops[name] = sum(row_flops(fm, engine_rows(engine, w.tokenized[lo : lo + ROUND_QUESTIONS])) for lo in chunks)
    runs = {name: summarize(r, flops[name], peak) for name, r in results.items()}
    dtype_name = str(w.dtype).replace("torch.", "")
    tol = TOLERANCES.get(dtype_name, TOLERANCES["bfloat16"])
    return ScoringBenchReport(
        setup=_setup(opts, w, params["total"], dtype_name, load_before),
        runs=runs,
        speedups=speedups(runs),
        peak_flops=peak,
        exactness=exactness(results, tol),
    )


def _setup(opts: ScoringBenchOptions, w: _Workload, parameters: int, dtype_name: str, load_before: float | None) -> dict[str, Any]:
    n = max(1, len(w.tokenized))
    if opts.data_dir:
        source = f"{opts.data_dir}/{opts.dataset}"
        structure = f"real prepared questions: the first {len(w.requests)} closed questions in file order"
    else:
        source = f"synthetic (seed {opts.seed})"
        structure = "synthetic, an assumed structure: " + SyntheticShape().describe()
    return {
        "model_shape": opts.shape.as_dict(),
        "parameters": parameters,
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
        "source": source,
        "question_structure": structure,
        "system_prompt": opts.system_prompt or None,
        "system_prompt_tokens": w.system_tokens,
        "shared_prefix_fraction": shared_prefix_fraction(w.tokenized),
        "mean_prompt_tokens": sum(len(t.prompt_ids) for t in w.tokenized) / n,
        "mean_choice_tokens": _mean_choice_tokens(w.tokenized),
        "mean_choices": sum(len(t.choice_ids) for t in w.tokenized) / n,
        "engine_info": w.engines["engine"].info().extra,
    }


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
