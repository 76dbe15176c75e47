"""The choice-scoring benchmark behind ``ray-bench bench scoring``.

In one run, on one question set and one random-weight model, it times the reference
approach, naive batching and the HF engine with and without cross-question prefix
sharing (:mod:`ray_bench.bench.approaches`) and, with ``engine="vllm"``, the vLLM engine
on the same weights with and without prefix-cache reads (:mod:`ray_bench.bench.scoring_vllm`).
Each approach scores the whole set ``repeats`` times, the approaches taking turns in an
order that alternates every repeat; its best repeat gives the throughput, forward tokens,
speedups and model-FLOPs utilization against a matmul peak measured in the same run.
Every engine approach's numbers must equal the reference's.

Every approach scores the same token ids: the prompt rendered with the same system
message (by default Qwen2.5's, which its chat template adds to every prompt), so the
reference and naive batching pay for the shared header just as the engine does.
"""

from __future__ import annotations

import os
import shutil
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
    run_vllm,
)
from ray_bench.bench.flops import flop_model_of, measure_peak_flops, row_flops, separate_sequence_flops
from ray_bench.bench.models import ModelShape, build_random_model, count_parameters
from ray_bench.bench.questions import QWEN_SYSTEM_PROMPT, SyntheticShape
from ray_bench.bench.report import (
    ScoringBenchReport,
    best_repeat,
    exactness,
    shared_prefix_fraction,
    speedups,
    summarize_repeats,
)
from ray_bench.config import EngineConfig
from ray_bench.engines.base import ScoreRequest
from ray_bench.errors import ConfigError

#: (absolute, relative) tolerance of the exactness check per dtype; fp32 is the contract.
TOLERANCES = {"float32": (1e-5, 0.0), "bfloat16": (5e-2, 1e-2), "float16": (5e-2, 1e-2)}

WARMUP_QUESTIONS = 3
#: Most questions one engine call gets (the runner calls an engine once per shard), so
#: prefixes are shared only within such a call.
ROUND_QUESTIONS = 60
#: ``engine`` values: ``hf`` runs the HF approaches, ``vllm`` adds the vLLM ones.
ENGINES = ("hf", "vllm")


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
        repeats: Timed passes over the whole set; each approach reports its fastest.
        engine: ``hf`` (the HF approaches) or ``vllm`` (also the vLLM engine, with and
            without prefix-cache reads, on the same weights saved to a temp dir).
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
    repeats: int = 3
    engine: str = "hf"


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
    """The model, engines and questions shared by the approaches.

    ``engines`` are the HF ones, ``vllm`` the vLLM ones (empty unless ``engine="vllm"``);
    ``scratch`` holds the checkpoint vLLM loaded.
    """

    model: Any
    engines: dict[str, Any]
    device: Any
    dtype: Any
    budget: int
    requests: list[ScoreRequest]
    tokenized: list[Tokenized]
    n_ref: int
    system_tokens: int
    vllm: dict[str, Any] = field(default_factory=dict)
    scratch: Path | None = None

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
    _check_options(opts)
    work = _prepare(opts, say)
    try:
        if opts.engine == "vllm":
            _load_vllm(opts, work, say)
        load_before = _load_average()
        repeats, peak = _timed_repeats(work, opts.repeats, say)
        return _report(opts, work, repeats, peak, load_before)
    finally:
        # The vLLM engines share one LLM: closing the first shuts it down.
        for engine in [*work.engines.values(), *list(work.vllm.values())[:1]]:
            engine.close()
        if work.scratch is not None:
            shutil.rmtree(work.scratch, ignore_errors=True)


def _check_options(opts: ScoringBenchOptions) -> None:
    """Refuse bad options, and a missing vLLM, before a model is built."""
    if opts.engine not in ENGINES:
        raise ConfigError(f"engine {opts.engine!r} is not one of {', '.join(ENGINES)}", hint="Use --engine hf or vllm.")
    if opts.repeats < 1:
        raise ConfigError(f"repeats must be at least 1, got {opts.repeats}")
    if opts.engine == "vllm":
        from ray_bench.bench.scoring_vllm import require_vllm

        require_vllm("Without vLLM use --engine hf.")


def _load_vllm(opts: ScoringBenchOptions, w: _Workload, say: Any) -> None:
    """Load the vLLM engines on the model's weights, in its dtype, on its device."""
    from ray_bench.bench.scoring_vllm import load_vllm_engines, max_model_len_for

    w.scratch = Path(tempfile.mkdtemp(prefix="rb-bench-vllm-"))
    say(f"saving the model to {w.scratch} and loading it with vLLM ({_dtype_name(w.dtype)})")
    w.vllm = load_vllm_engines(
        w.model,
        w.engines["engine"].tokenizer,
        w.scratch,
        dtype=_dtype_name(w.dtype),
        device=str(getattr(w.device, "type", w.device)),
        system=opts.system_prompt or None,
        max_model_len=max_model_len_for(w.tokenized, opts.shape.max_positions),
    )


def _dtype_name(dtype: Any) -> str:
    return str(dtype).replace("torch.", "")


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


def _chunks(n: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` bounds of the engine calls over ``n`` questions."""
    bounds = list(range(0, n, ROUND_QUESTIONS)) + [n]
    return list(zip(bounds, bounds[1:]))


def _steps(w: _Workload) -> list[tuple[str, Any]]:
    """Per approach, ``run(lo, hi) -> RunResult`` for one engine call's questions."""
    steps: list[tuple[str, Any]] = [
        ("reference", lambda lo, hi: run_reference(w.model, w.tokenized[lo : min(hi, w.n_ref)], w.device)),
        ("naive-batched", lambda lo, hi: run_naive_batched(w.model, w.tokenized[lo:hi], w.budget, w.pad_id, w.device)),
    ]
    steps += [
        (name, lambda lo, hi, name=name, e=engine: run_engine(e, w.requests[lo:hi], w.tokenized[lo:hi], name))
        for name, engine in w.engines.items()
    ]
    steps += [
        (name, lambda lo, hi, name=name, e=engine: run_vllm(e, w.requests[lo:hi], name)) for name, engine in w.vllm.items()
    ]
    return steps


def _timed_repeats(w: _Workload, repeats: int, say: Any) -> tuple[dict[str, list[RunResult]], float]:
    """Time every approach on the whole set ``repeats`` times, alternating their order.

    On a shared machine another process's load spike then hits every approach alike
    instead of whichever happened to run at the time, and each approach's best repeat is
    the least disturbed one. Each engine call gets at most :data:`ROUND_QUESTIONS`
    questions, as the runner calls it per shard. The peak is re-measured every repeat
    and the best value is kept. The reference scores only the first ``n_ref`` questions.
    """
    steps = _steps(w)
    say("warming up")
    for _name, step in steps:
        step(0, min(WARMUP_QUESTIONS, len(w.requests)))  # the first vLLM call also warms its kernels
    chunks = _chunks(len(w.requests))
    out: dict[str, list[RunResult]] = {name: [] for name, _ in steps}
    peaks: list[float] = []
    for rep in range(repeats):
        say(f"repeat {rep + 1}/{repeats}: {len(w.requests)} questions in {len(chunks)} engine call(s) of <= {ROUND_QUESTIONS}")
        peaks.append(measure_peak_flops(w.dtype, w.device))
        for name, step in steps if rep % 2 == 0 else steps[::-1]:
            limit = w.n_ref if name == "reference" else len(w.requests)
            out[name].append(merge([step(lo, hi) for lo, hi in chunks if lo < limit]))
    return out, max(peaks)


def _report(
    opts: ScoringBenchOptions, w: _Workload, repeats: dict[str, list[RunResult]], peak: float, load_before: float | None
) -> ScoringBenchReport:
    params = count_parameters(w.model)
    best = {name: reps[best_repeat(reps)] for name, reps in repeats.items()}
    flops = _flops(w, params["layers"], best)
    runs = {name: summarize_repeats(reps, flops[name], peak) for name, reps in repeats.items()}
    dtype_name = _dtype_name(w.dtype)
    tol = TOLERANCES.get(dtype_name, TOLERANCES["bfloat16"])
    exact = exactness(best, tol)
    exact["max_abs_diff_across_repeats"] = {name: _repeat_spread(reps) for name, reps in repeats.items()}
    return ScoringBenchReport(
        setup=_setup(opts, w, params["total"], dtype_name, load_before),
        runs=runs,
        speedups=speedups(runs),
        peak_flops=peak,
        exactness=exact,
    )


def _flops(w: _Workload, layer_params: int, best: dict[str, RunResult]) -> dict[str, float]:
    """Model FLOPs of each approach's work (the vLLM ones estimated from its counters)."""
    from ray_bench.bench.scoring_vllm import vllm_flops

    fm = flop_model_of(w.model, layer_params)
    flops = {
        "reference": separate_sequence_flops(fm, w.tokenized[: w.n_ref]),
        "naive-batched": separate_sequence_flops(fm, w.tokenized),
    }
    for name, engine in w.engines.items():
        # Per engine call, as the engine was called, so the FLOPs match the sharing it could do.
        flops[name] = sum(row_flops(fm, engine_rows(engine, w.tokenized[lo:hi])) for lo, hi in _chunks(len(w.tokenized)))
    for name in w.vllm:
        flops[name] = vllm_flops(fm, w.tokenized, best[name])
    return flops


def _repeat_spread(repeats: list[RunResult]) -> float:
    """Max |difference| of any choice's sum between repeats (0.0: every repeat scored alike)."""
    first = repeats[0].sums
    return max(
        (abs(a - b) for r in repeats[1:] for qa, qb in zip(first, r.sums) for a, b in zip(qa, qb)), default=0.0
    )


def _setup(opts: ScoringBenchOptions, w: _Workload, parameters: int, dtype_name: str, load_before: float | None) -> dict[str, Any]:
    from ray_bench.bench.scoring_vllm import vllm_setup

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
        "repeats": opts.repeats,
        "engine": opts.engine,
        "source": source,
        "question_structure": structure,
        "system_prompt": opts.system_prompt or None,
        "system_prompt_tokens": w.system_tokens,
        "shared_prefix_fraction": shared_prefix_fraction(w.tokenized),
        "mean_prompt_tokens": sum(len(t.prompt_ids) for t in w.tokenized) / n,
        "mean_choice_tokens": _mean_choice_tokens(w.tokenized),
        "mean_choices": sum(len(t.choice_ids) for t in w.tokenized) / n,
        "engine_info": w.engines["engine"].info().extra,
        **vllm_setup(w.vllm),
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
