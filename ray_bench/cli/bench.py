"""``ray-bench bench ...``: benchmarks (``scoring``: the engines; ``analysis``: the analysis stage)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from ray_bench.cli.common import err_console, out_console
from ray_bench.errors import ConfigError

app = typer.Typer(no_args_is_help=True, help="Engine and analysis benchmarks.")

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
    report = run_scoring_benchmark(opts, log=lambda msg: err_console.print(f"[dim]{msg}[/dim]"))
    print_report(report.as_dict())
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report.as_dict(), indent=2) + "\n")
        err_console.print(f"wrote {json_path}")
    if not report.passed:
        raise typer.Exit(1)


def print_report(result: dict[str, Any]) -> None:
    """Print the benchmark header, table and verdict lines to stdout."""
    from rich.table import Table

    from ray_bench.bench.report import APPROACHES

    setup, runs = result["setup"], result["runs"]
    shape = setup["model_shape"]
    title = (
        f"Choice scoring: {shape['arch']} h{shape['hidden']} L{shape['layers']} V{shape['vocab']} "
        f"({setup['parameters'] / 1e6:.1f}M params, {setup['dtype']}, {setup['device']}), "
        f"{setup['questions']} questions ({setup['source']}), "
        f"prompt {setup['mean_prompt_tokens']:.0f} tok, {setup['mean_choices']:.1f} choices x "
        f"{setup['mean_choice_tokens']:.1f} tok, budget {setup['max_batch_tokens']} tok"
    )
    for line in _question_lines(setup):
        out_console.print(line, highlight=False, markup=False)
    table = Table(title=title, title_justify="left")
    columns = ("approach", "questions", "best s", "spread", "q/s", "fwd tok/q", "real tok/q", "logit rows/q", "GFLOP/q",
               "MFU", "speedup")
    for col in columns:
        table.add_column(col, justify="left" if col == "approach" else "right")
    ref_qps = runs["reference"]["questions_per_s"]
    for name, label in APPROACHES.items():
        if name not in runs:
            continue
        r = runs[name]
        table.add_row(
            label,
            str(r["questions"]),
            f"{r['seconds']:.2f}",
            f"{100 * (max(r['repeat_seconds']) / r['seconds'] - 1):.0f}%" if r["seconds"] > 0 else "-",
            f"{r['questions_per_s']:.2f}",
            f"{r['forward_tokens_per_question']:.1f}",
            f"{r['real_tokens_per_question']:.1f}",
            f"{r['logit_rows_per_question']:.1f}",
            f"{r['model_gflop_per_question']:.2f}",
            f"{100 * r['mfu']:.1f}%",
            f"{r['questions_per_s'] / ref_qps:.2f}x",
        )
    out_console.print(table)
    _print_verdict(result)


def _question_lines(setup: dict[str, Any]) -> list[str]:
    """The header: what the questions share, stated plainly (it decides what (c) can gain)."""
    system = setup.get("system_prompt")
    lines = [f"questions: {setup['question_structure']}."]
    if system:
        lines.append(
            f"system message ({setup['system_prompt_tokens']} tokens) rendered into every prompt for ALL approaches: {system!r}"
        )
    else:
        lines.append("no system message.")
    lines.append(
        f"prompt tokens equal to the sorted previous prompt's: {100 * setup['shared_prefix_fraction']:.0f}% "
        f"(what (c) can skip; the engines share within each engine call of {setup['round_questions']} questions)."
    )
    lines.append(
        f"timing: every approach scores the whole set {setup['repeats']} time(s), approaches alternating order every "
        "repeat; 'best s' is its fastest repeat (q/s, MFU and speedups use it), 'spread' how much slower its slowest was."
    )
    if setup.get("vllm_info"):
        info = setup["vllm_info"]["vllm"]
        lines.append(
            f"vllm {info.get('vllm_version')} ({info.get('vllm_distribution')}, model runner {info.get('model_runner')}): "
            f"(e) scores with {info.get('scoring_method')}; its prefix cache is emptied before every call. "
            "fwd tok/q of (e)/(f) = prompt tokens - prefix-cache hits (scoring_stats); their GFLOP/q and MFU are estimates."
        )
    if setup["source"].startswith("synthetic"):
        share = setup["shared_prefix_fraction"]
        verdict = "more than" if share > 0.73 else "less than" if share < 0.68 else "about as much as"
        lines.append(
            "note: the synthetic structure is an assumption, not measured data. Real data for comparison (demo "
            "tokenizer, first 180 questions, with / without this default system message): BBQ 68% / 57%, "
            f"BiasLens-Choices 71% / 55%, StereoSet-Intersentence 73% / 38%. This set shares {verdict} those, so "
            "judge (c) on real questions too: --data DIR --dataset NAME."
        )
    return lines


def _print_verdict(result: dict[str, Any]) -> None:
    from ray_bench.bench.report import EXACTNESS_KEYS

    setup = result["setup"]
    load = setup.get("load_average_after")
    if setup["device"] == "cpu" and load is not None and load > 1.25 * (setup.get("cpu_count") or 1):
        err_console.print(
            f"[yellow]warning: 1-min load average {load:.1f} on {setup['cpu_count']} CPUs; other processes "
            "were competing, so the timings are noisy (the approaches alternate order every repeat to share the noise).[/yellow]"
        )
    exact = result["exactness"]
    verdict = "PASS" if exact["passed"] else "FAIL"
    labels = {
        "c/a": "engine vs reference",
        "c/b": "engine vs naive batched",
        "d/a": "engine without sharing vs reference",
        "d/b": "engine without sharing vs naive batched",
        "c/d": "cross-question sharing on vs off",
        "e/c": "vllm engine vs hf engine",
        "e/d": "vllm engine vs hf engine without sharing",
        "f/b": "vllm uncached vs naive batched",
        "e/f": "vllm prefix-cache reads on vs off",
    }
    for key, label in labels.items():
        if key in result["speedups"]:
            out_console.print(f"speedup {key} ({label}):".ljust(56) + f"{result['speedups'][key]:.2f}x")
    out_console.print(
        f"peak: {result['peak_flops'] / 1e9:.1f} GFLOP/s (square matmul, {setup['dtype']}, best of the run); "
        "MFU = model FLOPs of real tokens / time / peak"
    )
    letters = {"engine": "c", "engine-no-sharing": "d", "naive-batched": "b", "vllm": "e", "vllm-uncached": "f"}
    diffs = ", ".join(
        f"max |{letters[name]} - a| = {exact[f'max_abs_diff_{key}_vs_reference']:.2e}"
        for name, key in EXACTNESS_KEYS.items()
        if f"max_abs_diff_{key}_vs_reference" in exact
    )
    agree = ", ".join(
        f"{letters[name]} {100 * value:.1f}%" for name, value in exact.get("prediction_agreement_by_approach", {}).items()
    )
    out_console.print(
        f"exactness: {diffs} (tol {exact['atol']:g} + {exact['rtol']:g}*|a|, b for scale only), token counts equal: "
        f"{exact['token_counts_equal']}, argmax agreement with a ({agree}) over {setup['reference_questions']} "
        f"questions: {verdict}"
    )


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
    from ray_bench.errors import UnknownNameError

    for kind, names, known in (("quantization method", method, METHODS), ("scheme", scheme, SCHEMES)):
        for name in names or ():
            if name not in known:
                raise UnknownNameError(kind, name, known)
    qset = build_quantized_set(
        out, methods=tuple(method or METHODS), schemes=tuple(scheme or SCHEMES), train_steps=train_steps, seed=seed,
        log=lambda msg: err_console.print(f"[dim]{msg}[/dim]", highlight=False),
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
    result = run_engine_gap(opts, log=lambda msg: err_console.print(f"[dim]{msg}[/dim]", highlight=False))
    print_engine_gap_report(result)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        err_console.print(f"wrote {json_path}")


def _sci(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_engine_gap_report(result: dict[str, Any]) -> None:
    """Print the engine-gap table, skipped variants and notes to stdout."""
    from rich.table import Table

    setup = result["setup"]
    datasets = ", ".join(f"{name} {n}" for name, n in setup["datasets"].items())
    table = Table(
        title=f"Engine gap vs quantization effect: {setup['set_dir']} on {setup['device']}, questions: {datasets}",
        title_justify="left",
    )
    columns = ("model", "dtype", "|vllm-hf| max", "mean", "|vllm-hf ct| max", "mean", "effect max", "mean",
               "gap/effect max", "mean", "agree")
    for col in columns:
        table.add_column(col, justify="left" if col == "model" else "right")
    for row in result["rows"]:
        effect = row.get("quant_effect", {})
        ratio = row.get("gap_over_effect", {})
        agree = row["prediction_agreement_vllm_hf"]
        table.add_row(
            "base" if row["method"] == "base" else f"{row['method']} {row['scheme']}",
            row["dtype"],
            _sci(row["engine_gap"]["max"]), _sci(row["engine_gap"]["mean"]),
            _sci(row["ct_gap"]["max"]), _sci(row["ct_gap"]["mean"]),
            _sci(effect.get("max")), _sci(effect.get("mean")),
            _ratio(ratio.get("max")), _ratio(ratio.get("mean")),
            "-" if agree is None else f"{100 * agree:.0f}%",
        )
    out_console.print(table)
    out_console.print(
        "gap: |vLLM - HF| of the choice log-prob sums over every choice; hf ct: HF with compressed-tensors' fake "
        "quantization (absmax/127.5) instead of the kernel's (absmax/127); effect: |HF(variant) - HF(base)|, same "
        "dtype; agree: questions where vLLM and HF predict the same choice.",
        highlight=False,
    )
    for row in result["rows"]:
        if row["note"]:
            out_console.print(f"{row['method']} {row['scheme']} in {row['dtype']}: {row['note']}", highlight=False)
        if row["failed_questions"] or not row["token_counts_equal"]:
            out_console.print(
                f"{row['method']} {row['scheme']} {row['dtype']}: {row['failed_questions']} failed questions left out, "
                f"token counts equal: {row['token_counts_equal']}",
                highlight=False,
            )
    for skip in result["skipped"]:
        out_console.print(f"skipped {skip['method']} {skip['scheme']}: {skip['reason']}", highlight=False)
    err_console.print(f"engine-gap took {result['seconds']:.0f} s")


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
        log=lambda msg: err_console.print(f"[dim]{msg}[/dim]", highlight=False),
    )
    print_analysis_report(result)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        err_console.print(f"wrote {json_path}")
    if not (result["check"]["passed"] and result["analyze_flips_equal_flips_step"]["equal"]):
        raise typer.Exit(1)


def _gib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**30:.2f} GiB"


def _num(value: float | None, fmt: str, suffix: str = "") -> str:
    return "failed" if value is None else f"{value:{fmt}}{suffix}"


def print_analysis_report(result: dict[str, Any]) -> None:
    """Print the analysis benchmark's header, tables and verdict lines to stdout."""
    from rich.table import Table

    from ray_bench.bench.analysis import APPROACHES, TARGETS

    setup, best, peak = result["setup"], result["best"], result["peak_rss_bytes"]
    study = setup["study"]
    closed = {k: v for k, v in study["subsets"].items() if v["kind"] == "closed"}
    lines = [
        f"study (synthetic): {study['models']} models ({study['bases']} bases x {study['variants'] // max(1, study['bases'])} "
        f"variants) x {study['questions']:,} questions = {study['result_rows']:,} result rows in {study['shard_files']:,} "
        f"shard files; scale {setup['scale']:g}; built in {setup['build_seconds']} s",
        "closed: " + ", ".join(f"{k} {v['questions']:,} ({v['choices']} ch)" for k, v in closed.items()),
        f"open: {study['open_questions']:,} questions with synthetic answers of {study['open_answer_words'][0]}-"
        f"{study['open_answer_words'][1]} words (real answers are longer: text metrics cost more there)",
        f"tests: {setup['permutations']} permutations and {setup['bootstrap']} bootstrap resamples each; "
        f"{setup['rounds']} rounds, approaches alternating order, each in a fresh process; {setup['cpu_count']} CPUs; "
        f"polars {setup['polars']}, pandas {setup['pandas']}",
    ]
    if setup["pandas_variants"] != setup["all_variants"]:
        lines.append(
            f"pandas baseline ran on {setup['pandas_variants']} of {setup['all_variants']} variants "
            f"({', '.join(setup['pandas_subsample'] or [])}); its time is extrapolated linearly "
            f"x{setup['pandas_extrapolation_factor']:.1f}"
        )
    for line in lines:
        out_console.print(line, highlight=False, markup=False)
    table = Table(title="Analysis benchmark (best round)", title_justify="left")
    for col in ("approach", "best s", "rounds s", "peak RSS", "vs ours (flip+entropy)"):
        table.add_column(col, justify="left" if col == "approach" else "right")
    for name, label in APPROACHES.items():
        seconds = best["pandas_all_variants"] if name == "pandas" else best[name]
        shown = _num(seconds, ".2f") + (
            " (extrap.)" if name == "pandas" and setup["pandas_variants"] != setup["all_variants"] else "")
        rel = f"{seconds / best['flips']:.2f}x" if seconds is not None and best["flips"] else "-"
        rounds_s = ", ".join("killed" if r[name].get("failed") else f"{r[name]['seconds']:.1f}" for r in result["rounds"])
        table.add_row(label, shown, rounds_s, _gib(peak[name]) + (" (killed)" if name in result.get("failed", {}) else ""),
                      rel)
    out_console.print(table)
    for name, reasons in result.get("failed", {}).items():
        out_console.print(f"{name}: {reasons[0]}", highlight=False, markup=False)
    targets, ratios = result["targets"], result["ratios"]
    verdict = Table(title="Targets (2 cores)", title_justify="left")
    for col in ("target", "measured", "limit", "ratio", "verdict"):
        verdict.add_column(col, justify="left" if col == "target" else "right")
    peak_rss = result["peak_rss_bytes"]["analyze"]
    rows = (
        ("flip + entropy tables", _num(targets["flips_s"]["value"], ".2f", " s"), f"< {TARGETS['flips_s']:.0f} s",
         _num(ratios["flips_over_target"], ".2f", " of limit"), targets["flips_s"]["passed"]),
        ("whole analysis", _num(targets["analyze_s"]["value"], ".2f", " s"), f"< {TARGETS['analyze_s']:.0f} s",
         _num(ratios["analyze_over_target"], ".2f", " of limit"), targets["analyze_s"]["passed"]),
        ("peak RSS of the whole analysis",
         _gib(peak_rss) + (" (killed)" if "analyze" in result.get("failed", {}) else ""),
         f"< {_gib(TARGETS['peak_rss_bytes'])}", _num(ratios["peak_rss_over_target"], ".2f", " of limit"),
         targets["peak_rss_bytes"]["passed"]),
        ("pandas flip table / ours flip+entropy", _num(targets["speedup_vs_pandas"]["value"], ".2f", "x"),
         f">= {TARGETS['speedup_vs_pandas']:.0f}x", _num(ratios["pandas_over_flips"], ".2f", "x"),
         targets["speedup_vs_pandas"]["passed"]),
    )
    for name, measured, limit, ratio, ok in rows:
        verdict.add_row(name, measured, limit, ratio, "PASS" if ok else "FAIL")
    out_console.print(verdict)
    check = result["check"]
    out_console.print(f"ratio pandas / whole analysis: {_num(ratios['pandas_over_analyze'], '.2f', 'x')}",
                      highlight=False)
    if check.get("skipped"):
        out_console.print(f"correctness check skipped: {check['skipped']}: FAIL", highlight=False)
    else:
        out_console.print(
            f"correctness: pandas vs ours over {check['rows_compared']:,} flip rows ({check['variants_compared']} "
            f"variants) and {check['uncertainty_rows_compared']} uncertainty rows: counts equal {check['counts_equal']}, "
            f"max |diff| {check['max_abs_diff']:.2e} (tol {check['tol']:g}): {'PASS' if check['passed'] else 'FAIL'}; "
            f"analyze's flips table equals the flips step's: {result['analyze_flips_equal_flips_step']['equal']}",
            highlight=False,
        )
    if result.get("profile"):
        if result["profile"].get("failed"):
            out_console.print(f"profile: {result['profile']['reason']}", highlight=False)
        else:
            _print_profile(result["profile"])
    load = setup.get("load_average_after")
    if load is not None and load > 1.25 * (setup.get("cpu_count") or 1):
        err_console.print(
            f"[yellow]warning: 1-min load average {load:.1f} on {setup['cpu_count']} CPUs; other processes were "
            "competing, so the timings are noisy (the approaches alternate rounds to share the noise).[/yellow]"
        )
    if setup.get("work_dir"):
        err_console.print(f"study and outputs kept in {setup['work_dir']}")


def _print_profile(profile: dict[str, Any]) -> None:
    from rich.table import Table

    counts = {k: profile[k] for k in ("open_pairs", "open_distinct_pairs", "open_rouge_calls") if k in profile}
    steps = {k: v for k, v in profile.items()
             if k not in counts and k not in ("process_seconds", "peak_rss_bytes", "failed", "reason", "seconds")}
    total = sum(steps.values())
    table = Table(title="Each analysis step alone (one process, tables not written)", title_justify="left")
    for col in ("step", "s", "share"):
        table.add_column(col, justify="left" if col == "step" else "right")
    for name, seconds in sorted(steps.items(), key=lambda kv: -kv[1]):
        table.add_row(name, f"{seconds:.2f}", f"{100 * seconds / total:.0f}%" if total else "-")
    out_console.print(table)
    if counts:
        out_console.print(
            f"open-ended pairs: {counts.get('open_pairs', 0):,} (distinct text pairs {counts.get('open_distinct_pairs', 0):,}, "
            f"of which differing, i.e. ROUGE-L calls: {counts.get('open_rouge_calls', 0):,})",
            highlight=False,
        )
