"""``ray-bench bench ...``: benchmarks (``scoring``: the engines; ``analysis``: the analysis stage; ``runner``:
the Ray runner's overhead)."""

from __future__ import annotations

from pathlib import Path

import typer

from ray_bench.cli import bench_openai
from ray_bench.cli.bench_tables import (
    print_analysis_report,
    print_engine_gap_report,
    print_report,
    print_runner_report,
)
from ray_bench.cli.common import err_console, log_dim, parse_int_list, write_json_report
from ray_bench.errors import ConfigError

app = typer.Typer(no_args_is_help=True, help="Engine, analysis and runner benchmarks.")
app.command("openai", epilog=bench_openai.EPILOG)(bench_openai.openai_bench)

SCORING_EPILOG = (
    "Examples:\n\n"
    "  ray-bench bench scoring\n\n"
    "  ray-bench bench scoring --questions 60 --threads 1 --json bench.json\n\n"
    "  ray-bench bench scoring --data data/ --dataset BBQ --questions 120\n\n"
    "  ray-bench bench scoring --system-prompt '' --max-row-tokens 1024\n\n"
    "  ray-bench bench scoring --engine vllm --questions 120 --repeats 3 --json vllm.json\n\n"
    "  ray-bench bench scoring --device cuda --dtype bfloat16 --preset qwen2.5-7b --questions 2000 "
    "--reference-questions 200"
)

_QWEN_DEFAULT = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


@app.command("scoring", epilog=SCORING_EPILOG)
def scoring(
    questions: int = typer.Option(180, "--questions", min=1, help="Closed questions to score."),
    preset: str | None = typer.Option(None, "--preset", help="Model shape preset, e.g. qwen2.5-1.5b, qwen2.5-7b, llama-3.1-8b."),
    arch: str | None = typer.Option(None, "--arch", help="llama or qwen2 (overrides the preset)."),
    hidden: int | None = typer.Option(None, "--hidden", min=8, help="Hidden size (default: the preset's, else 256)."),
    layers: int | None = typer.Option(None, "--layers", min=1, help="Decoder layers (default: the preset's, else 8)."),
    vocab: int | None = typer.Option(None, "--vocab", min=1, help="Model vocabulary (default: the preset's, else 32000)."),
    intermediate: int | None = typer.Option(None, "--intermediate", min=1, help="MLP width (default: the preset's, else 1024)."),
    heads: int | None = typer.Option(None, "--heads", min=1, help="Attention heads (default: the preset's, else 4)."),
    kv_heads: int | None = typer.Option(None, "--kv-heads", min=1, help="Key/value heads (default: the preset's, else 2)."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (fp32 on CPU, bf16 on CUDA), float32, bfloat16, float16."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    max_batch_tokens: int | None = typer.Option(
        None, "--max-batch-tokens", min=1, help="Token budget per forward (default: 2048 on CPU, 16384 on CUDA)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seeds the weights and the synthetic questions."),
    data: Path | None = typer.Option(None, "--data", help="Prepared datasets directory (instead of synthetic questions)."),
    dataset: str | None = typer.Option(None, "--dataset", help="Dataset name inside --data, e.g. BBQ."),
    tokenizer: Path | None = typer.Option(None, "--tokenizer", help="Local tokenizer directory (default: the demo tokenizer)."),
    reference_questions: int | None = typer.Option(
        None, "--reference-questions", min=1, help="Score only this many questions with the slow reference (default: all)."
    ),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="torch CPU threads (default: torch's choice, usually one per core)."
    ),
    system_prompt: str = typer.Option(
        _QWEN_DEFAULT,
        "--system-prompt",
        help="System message rendered into every prompt for every approach (default: Qwen2.5's, which its "
        "template adds to every prompt); '' for none.",
    ),
    min_shared_tokens: int | None = typer.Option(
        None, "--min-shared-tokens", min=1, help="Engine option: fewest prompt tokens a group must share (default 16)."
    ),
    max_row_tokens: int | None = typer.Option(
        None, "--max-row-tokens", min=1, help="Engine option: longest prefix-shared row (default min(2048, budget))."
    ),
    repeats: int = typer.Option(
        3, "--repeats", min=1, help="Timed passes over the whole set (approaches alternate order); each reports its best."
    ),
    engine: str = typer.Option(
        "hf", "--engine", help="hf (approaches a-d) or vllm (also e-f: the vLLM engine on the same weights; needs vLLM)."
    ),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the results as JSON here."),
) -> None:
    """Time choice scoring four (or six) ways on one random-weight model and check they agree.

    Compares (a) the reference approach, (b) naive batching, (c) the hf engine, which
    computes prompt prefixes shared across questions once, and (d) the hf engine without
    that sharing; with --engine vllm also (e) the vLLM engine with its default scoring
    method (on CPU prompt_logprobs with prefix-cache reads) and (f) vLLM with
    prompt_logprobs_uncached, on the same weights and questions in one run. Every approach
    scores the whole set --repeats times, in an order that alternates every repeat, and
    reports its best repeat: questions/s, forward tokens per question, speedups, and
    model-FLOPs utilization against a matmul peak measured in the same run. Every engine's
    log-prob sums must equal the reference's (max |diff| <= 1e-5 in fp32).
    """
    import torch

    from ray_bench.bench.models import resolve_shape
    from ray_bench.bench.scoring import ScoringBenchOptions, run_scoring_benchmark

    if threads is not None:
        torch.set_num_threads(threads)

    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise ConfigError(f"--dtype {dtype!r} is not one of auto, float32, bfloat16, float16")
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device {device!r} is not one of auto, cpu, cuda")
    if (data is None) != (dataset is None):
        raise ConfigError("--data and --dataset go together", hint="Pass both, e.g. --data data/ --dataset BBQ.")
    shape = resolve_shape(
        preset, arch=arch, hidden=hidden, layers=layers, vocab=vocab, intermediate=intermediate, heads=heads, kv_heads=kv_heads
    )
    opts = ScoringBenchOptions(
        shape=shape,
        questions=questions,
        dtype=dtype,
        device=device,
        max_batch_tokens=max_batch_tokens,
        seed=seed,
        data_dir=data,
        dataset=dataset,
        tokenizer=tokenizer,
        reference_questions=reference_questions,
        system_prompt=system_prompt or None,
        min_shared_tokens=min_shared_tokens,
        max_row_tokens=max_row_tokens,
        repeats=repeats,
        engine=engine,
    )
    report = run_scoring_benchmark(opts, log=log_dim)
    print_report(report.as_dict())
    if json_path is not None:
        write_json_report(json_path, report.as_dict())
    if not report.passed:
        raise typer.Exit(1)


QUANTIZED_SET_EPILOG = (
    "Examples:\n\n"
    "  ray-bench bench quantized-set --out /tmp/qset\n\n"
    "  ray-bench bench quantized-set --out qset --method rtn --method gptq --scheme w8a8 --scheme w4a16\n\n"
    "  ray-bench bench quantized-set --out qset --train-steps 120 --seed 1"
)


@app.command("quantized-set", epilog=QUANTIZED_SET_EPILOG)
def quantized_set(
    out: Path = typer.Option(..., "--out", help="Directory of the set (created; a base already there is reused)."),
    method: list[str] | None = typer.Option(
        None, "--method", help="Quantization method, repeatable (default: rtn, gptq, awq, smoothquant-rtn, smoothquant-gptq)."
    ),
    scheme: list[str] | None = typer.Option(None, "--scheme", help="Scheme, repeatable (default: w4a16, w8a16, w8a8)."),
    train_steps: int = typer.Option(60, "--train-steps", min=1, help="Training steps of the tiny base."),
    seed: int = typer.Option(0, "--seed", help="Seeds the base's training and the calibration."),
) -> None:
    """Train a tiny Qwen2 base and quantize it with every method x scheme (needs llmcompressor).

    Writes the checkpoints and DIR/set.json, the input of `ray-bench bench engine-gap` (run in the
    vLLM environment). Prints the set directory on stdout and one line per variant on stderr;
    a variant that fails is recorded in set.json and the others go on.
    """
    from ray_bench.bench.quantized_set import METHODS, SCHEMES, build_quantized_set

    qset = build_quantized_set(
        out, methods=tuple(method or METHODS), schemes=tuple(scheme or SCHEMES), train_steps=train_steps, seed=seed,
        log=log_dim,
    )
    for (m, s), path in qset.variants.items():
        err_console.print(f"{m} {s}: ok {path}", highlight=False, markup=False)
    for (m, s), error in qset.failed.items():
        err_console.print(f"{m} {s}: failed: {error}", highlight=False, markup=False)
    print(qset.root)
    if not qset.variants:
        raise typer.Exit(1)


ENGINE_GAP_EPILOG = (
    "Examples:\n\n"
    "  ray-bench bench engine-gap --set /tmp/qset\n\n"
    "  ray-bench bench engine-gap --set /tmp/qset --questions 50 --dataset BBQ --json gap.json\n\n"
    "  ray-bench bench engine-gap --set /tmp/qset --dataset BBQ --dataset StereoSet-Intersentence\n\n"
    "  ray-bench bench engine-gap --set /tmp/qset --data data/ --questions 150"
)


@app.command("engine-gap", epilog=ENGINE_GAP_EPILOG)
def engine_gap(
    set_dir: Path = typer.Option(..., "--set", help="A set written by `ray-bench bench quantized-set`."),
    questions: int = typer.Option(100, "--questions", min=1, help="Closed questions per dataset (or all the sample has)."),
    dataset: list[str] | None = typer.Option(
        None, "--dataset", help="Sample dataset, repeatable (default: BBQ and CEB-Recognition-S)."
    ),
    data: Path | None = typer.Option(
        None, "--data", help="Prepared datasets (ray-bench datasets prepare); default: the bundled sample."
    ),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the results as JSON here."),
) -> None:
    """Compare the vLLM-vs-HF engine gap with the quantization effect on a quantized set (needs vLLM).

    Scores the base and every variant on sample closed questions with the hf engine (W8A8
    activations quantized as vLLM's int8 kernels do), the hf engine with transformers' own
    compressed-tensors fake quantization, and the vllm engine. Per method, scheme and dtype:
    max and mean |vLLM - HF| of the choice log-prob sums (engine gap), the same against the
    compressed-tensors mode, max and mean |HF(variant) - HF(base)| in the same dtype
    (quantization effect), their ratios and vLLM-HF prediction agreement. Variants vLLM-CPU
    cannot load are skipped with the reason; W4A16 runs in bfloat16 on CPU, with a bfloat16 base.
    """
    from ray_bench.bench.engine_gap import DEFAULT_DATASETS, EngineGapOptions, run_engine_gap

    opts = EngineGapOptions(
        set_dir=set_dir, datasets=tuple(dataset or DEFAULT_DATASETS), questions=questions, data_dir=data
    )
    result = run_engine_gap(opts, log=log_dim)
    print_engine_gap_report(result)
    if json_path is not None:
        write_json_report(json_path, result)


ANALYSIS_EPILOG = (
    "Examples:\n\n"
    "  ray-bench bench analysis\n\n"
    "  ray-bench bench analysis --rounds 1 --scale 0.05 --permutations 100\n\n"
    "  ray-bench bench analysis --work-dir /tmp/rb-study --json analysis-bench.json\n\n"
    "  ray-bench bench analysis --pandas-variants 5 --profile"
)


@app.command("analysis", epilog=ANALYSIS_EPILOG)
def analysis(
    rounds: int = typer.Option(3, "--rounds", min=1, help="Timed rounds (approaches alternate order); best is reported."),
    scale: float = typer.Option(1.0, "--scale", min=0.0001, max=1.0, help="Multiplies every dataset's question count."),
    permutations: int = typer.Option(1000, "--permutations", min=1, help="Permutations (and bootstrap resamples) per test."),
    work_dir: Path | None = typer.Option(
        None, "--work-dir", help="Build the study here and keep it; a later run with the same shape reuses it."
    ),
    keep: bool = typer.Option(False, "--keep", help="Keep the temporary study and outputs (printed at the end)."),
    pandas_variants: int | None = typer.Option(
        None, "--pandas-variants", min=1,
        help="Run the pandas baseline on this many variants only and extrapolate linearly (default: all).",
    ),
    shard_size: int | None = typer.Option(
        None, "--shard-size", min=1, help="Questions per shard file (default: one shard per model and dataset)."
    ),
    profile: bool | None = typer.Option(
        None, "--profile/--no-profile", help="Time each analysis step alone afterwards (default: when a target fails)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seeds the synthetic study."),
    max_rss_gib: float | None = typer.Option(
        None, "--max-rss-gib", min=0.1,
        help="Kill a step whose RSS passes this and report it failed (default: 3/4 of RAM, at most 16).",
    ),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the results as JSON here."),
) -> None:
    """Time the whole analysis on a synthetic study shaped like the full one, against a pandas baseline.

    Builds 60 models (10 bases x 5 quantized variants) x 85,823 questions (each dataset's real
    choice count, BBQ ambiguous contexts, short open-ended answers), then round by round, each
    in a fresh process: (a) the whole `ray-bench analyze` (all tables, all tests) with its peak
    RSS, (a') the flip, uncertainty and entropy tables alone, and (b) the flip table in the
    reference's style with pandas (row-wise apply, one merge per variant, groupby), whose
    numbers must equal ours. Prints best-round seconds, ratios and PASS/FAIL per target.
    """
    from ray_bench.bench.analysis import run_benchmark

    result = run_benchmark(
        rounds=rounds, scale=scale, permutations=permutations, work_dir=work_dir, keep=keep,
        pandas_variants=pandas_variants, shard_size=shard_size, profile=profile, seed=seed,
        max_rss_bytes=int(max_rss_gib * 2**30) if max_rss_gib else None,
        log=log_dim,
    )
    print_analysis_report(result)
    if json_path is not None:
        write_json_report(json_path, result)
    if not (result["check"]["passed"] and result["analyze_flips_equal_flips_step"]["equal"]):
        raise typer.Exit(1)



RUNNER_EPILOG = (
    "Examples:\n\n"
    "  ray-bench bench runner\n\n"
    "  ray-bench bench runner --questions 2000 --delay-ms 0.5 --shard-sizes 100,1000 --rounds 1\n\n"
    "  ray-bench bench runner --rounds 5 --json runner-bench.json\n\n"
    "  ray-bench bench runner --replicas 2 --work-dir /tmp/rb-runner"
)


@app.command("runner", epilog=RUNNER_EPILOG)
def runner(
    questions: int = typer.Option(10_000, "--questions", min=1, help="Synthetic closed questions (one BBQ dataset)."),
    delay_ms: float = typer.Option(1.0, "--delay-ms", min=0.0, help="The dummy engine's cost per question, ms."),
    shard_sizes: str = typer.Option(
        "100,1000,5000", "--shard-sizes", help="Comma-separated questions per shard, one measurement each."
    ),
    rounds: int = typer.Option(2, "--rounds", min=1, help="Interleaved rounds (order alternates); best is reported."),
    replicas: int = typer.Option(1, "--replicas", min=1, help="Ray actors of the model (CPU mode, 1 CPU each)."),
    work_dir: Path | None = typer.Option(
        None, "--work-dir", help="Keep the data and every run's shard files here (default: a temporary directory)."
    ),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the results as JSON here."),
) -> None:
    """Time the Ray runner against the same engine in-process: what Ray adds per question.

    Writes --questions synthetic closed questions as a prepared BBQ dataset and runs them with
    the dummy engine (sleeping --delay-ms per question) two ways per shard size: (ray) the real
    `ray-bench run` path, ray_bench.runner.driver.run, on CPU actors; (in-process) the same shards
    through the same engine and the same shard writer in this process. Ray starts once (its
    startup is reported, not counted); rounds interleave the approaches, alternating their order.
    Prints engine time (questions x delay), best walls, overhead = (ray - in-process) / in-process
    and as a share of engine time, and PASS/FAIL of the target (<= 10% at shard size 1000).
    """
    from ray_bench.bench.runner import RunnerBenchOptions, run_runner_benchmark

    sizes = parse_int_list(shard_sizes, "--shard-sizes", "100,1000,5000")
    opts = RunnerBenchOptions(questions=questions, delay_s=delay_ms / 1000, shard_sizes=sizes, rounds=rounds,
                              replicas=replicas, work_dir=work_dir)
    result = run_runner_benchmark(opts, log=log_dim)
    print_runner_report(result)
    if json_path is not None:
        write_json_report(json_path, result.as_dict())
    if not result.all_processed:
        raise typer.Exit(1)
