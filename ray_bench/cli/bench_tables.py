"""Tables and lines the ``ray-bench bench`` commands print (data on stdout, notes on stderr)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ray_bench.cli.common import err_console, out_console

if TYPE_CHECKING:
    from ray_bench.bench.runner import RunnerBenchResult


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


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.1f}%"


def print_runner_report(result: RunnerBenchResult) -> None:
    """Print the runner benchmark's header, table and target line to stdout."""
    from rich.table import Table

    opts = result.options
    out_console.print(
        f"{opts.questions:,} synthetic closed questions (BBQ, 3 choices), dummy engine at {1000 * opts.delay_s:g} ms "
        f"per question = {result.engine_s:.2f} s engine time per run; {opts.replicas} Ray actor(s) on CPU; "
        f"{result.cpu_count} CPUs; {opts.rounds} round(s), approaches alternating order, best round shown",
        highlight=False, markup=False,
    )
    out_console.print(
        f"ray: ray_bench.runner.driver.run (validate, read, plan, manifest, actor start, shards to the actor and "
        f"back, shard files); in-process: the same shards, engine and shard writer without Ray. Ray startup "
        f"{result.ray_startup_s:.1f} s (once, not counted). 'ray to 1st shard': from the run's start until the "
        "actor began its first shard; 'ray in actors': time in shard tasks on the actors.",
        highlight=False, markup=False,
    )
    table = Table(title="Ray runner vs in-process (best round)", title_justify="left")
    for col in ("shard size", "shards", "engine s", "ray s", "in-process s", "rounds ray / in-proc s",
                "ray to 1st shard s", "ray in actors s", "overhead", "overhead / engine", "per round / engine"):
        table.add_column(col, justify="right")
    for size in result.sizes:
        best_ray = min(size.rounds, key=lambda r: r.ray.seconds).ray
        rounds = ", ".join(f"{r.ray.seconds:.2f}/{r.in_process.seconds:.2f}" for r in size.rounds)
        per_round = ", ".join(_pct(r.overhead_s / size.engine_s) if size.engine_s else "-" for r in size.rounds)
        table.add_row(
            f"{size.shard_size:,}", str(size.shards), f"{size.engine_s:.2f}", f"{size.ray_s:.2f}",
            f"{size.in_process_s:.2f}", rounds, _num(best_ray.first_shard_after_s, ".2f"),
            _num(best_ray.actor_seconds, ".2f"), _pct(size.overhead),
            _pct(size.overhead_of_engine), per_round,
        )
    out_console.print(table)
    passed = result.target_passed
    measured = next((s.overhead_of_engine for s in result.sizes if s.shard_size == result.target_shard_size), None)
    verdict = "not measured" if passed is None else "PASS" if passed else "FAIL"
    out_console.print(
        f"target: Ray overhead <= {100 * result.target_share:.0f}% of engine time at shard size "
        f"{result.target_shard_size:,}: {_pct(measured)}: {verdict}; every run wrote every question: "
        f"{'PASS' if result.all_processed else 'FAIL'}",
        highlight=False, markup=False,
    )
    load = result.load_average_after
    if load is not None and load > 1.25 * result.cpu_count:
        err_console.print(
            f"[yellow]warning: 1-min load average {load:.1f} on {result.cpu_count} CPUs; other processes were "
            "competing, so the timings are noisy (the approaches alternate order every round to share the noise).[/yellow]"
        )
