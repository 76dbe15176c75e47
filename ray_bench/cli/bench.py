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
    json_path: Path | None = typer.Option(None, "--json", help="Also write the results as JSON here."),
) -> None:
    """Time choice scoring four ways on one random-weight model and check they agree.

    Compares (a) the reference approach, (b) naive batching, (c) the hf engine, which
    computes prompt prefixes shared across questions once, and (d) the hf engine without
    that sharing, on the same questions in one run: questions/s, forward tokens per
    question, speedups, and model-FLOPs utilization against a matmul peak measured in the
    same run. Both engines' log-prob sums must equal the reference's (max |diff| <= 1e-5
    in fp32).
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
    for col in ("approach", "questions", "q/s", "fwd tok/q", "real tok/q", "logit rows/q", "GFLOP/q", "MFU", "speedup"):
        table.add_column(col, justify="left" if col == "approach" else "right")
    ref_qps = runs["reference"]["questions_per_s"]
    for name, label in APPROACHES.items():
        r = runs[name]
        table.add_row(
            label,
            str(r["questions"]),
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
        f"(what (c) can skip; (c)/(d) share within each engine call of {setup['round_questions']} questions)."
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
    setup = result["setup"]
    load = setup.get("load_average_after")
    if setup["device"] == "cpu" and load is not None and load > 1.25 * (setup.get("cpu_count") or 1):
        err_console.print(
            f"[yellow]warning: 1-min load average {load:.1f} on {setup['cpu_count']} CPUs; other processes "
            "were competing, so the timings are noisy (the approaches alternate rounds to share the noise).[/yellow]"
        )
    exact = result["exactness"]
    verdict = "PASS" if exact["passed"] else "FAIL"
    labels = {
        "c/a": "engine vs reference",
        "c/b": "engine vs naive batched",
        "d/a": "engine without sharing vs reference",
        "d/b": "engine without sharing vs naive batched",
        "c/d": "cross-question sharing on vs off",
    }
    for key, label in labels.items():
        out_console.print(f"speedup {key} ({label}):".ljust(56) + f"{result['speedups'][key]:.2f}x")
    out_console.print(
        f"peak: {result['peak_flops'] / 1e9:.1f} GFLOP/s (square matmul, {setup['dtype']}, best of the run); "
        "MFU = model FLOPs of real tokens / time / peak"
    )
    out_console.print(
        f"exactness: max |c - a| = {exact['max_abs_diff_engine_vs_reference']:.2e}, "
        f"max |d - a| = {exact['max_abs_diff_no_sharing_vs_reference']:.2e}, "
        f"max |b - a| = {exact['max_abs_diff_naive_vs_reference']:.2e} "
        f"(tol {exact['atol']:g} + {exact['rtol']:g}*|a|), token counts equal: {exact['token_counts_equal']}, "
        f"argmax agreement {100 * exact['prediction_agreement']:.1f}% over {setup['reference_questions']} questions: {verdict}"
    )


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
