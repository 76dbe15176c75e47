"""`ray-bench analyze`: every variant against its own base: flips, bias metrics, tests, groups."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ray_bench.cli.common import check_format, config_from, err_console, print_frame

EPILOG = (
    "Examples:\n\n"
    "  ray-bench analyze --results runs/r1 --out runs/r1/analysis\n\n"
    "  ray-bench analyze --results runs/r1 --base base --out analysis/ --format csv > flips.csv\n\n"
    "  ray-bench analyze --results runs/r1 --pair q4=base --pair q8=base --control base-vllm=base --out analysis/\n\n"
    "  ray-bench analyze --config jobs/analyze.yaml --permutations 200\n\n"
    "  ray-bench analyze --results runs/housing --out runs/housing/analysis --housing-correction bonferroni"
)


def analyze(
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML with AnalyzeConfig fields; flags override it.")] = None,
    results: Annotated[Optional[Path], typer.Option("--results", help="The --out directory of `ray-bench run`.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Where to write the tables (Parquet + CSV).")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Prepared questions (default: the run's).")] = None,
    base: Annotated[Optional[str], typer.Option("--base", help="Pair every other model with this base.")] = None,
    pair: Annotated[Optional[list[str]], typer.Option("--pair", help="VARIANT=BASE; repeatable.")] = None,
    control: Annotated[Optional[list[str]], typer.Option("--control", help="CONTROL=BASE: the base re-scored.")] = None,
    permutations: Annotated[Optional[int], typer.Option("--permutations", help="Per test (default: 1000).")] = None,
    bootstrap: Annotated[Optional[int], typer.Option("--bootstrap", help="Resamples per CI (default: 1000).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of every test (default: 0).")] = None,
    min_group_questions: Annotated[
        Optional[int], typer.Option("--min-group-questions", help="Questions a social group needs (default: 50).")
    ] = None,
    no_text_metrics: Annotated[bool, typer.Option("--no-text-metrics", help="Skip ROUGE-L etc. of open answers.")] = False,
    judge: Annotated[Optional[str], typer.Option("--judge", help="Whose verdicts, when several judges judged the run.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="stdout format: table, csv or json (of the flip summary).")] = "table",
    housing_correction: Annotated[Optional[str], typer.Option(
        "--housing-correction", help="Housing audit: Dunn's correction, holm (default) or bonferroni.")] = None,
) -> None:
    """Pair each variant with its own base and write every analysis table.

    Tables: flips (with Wilson intervals and direction), uncertainty (by the base's entropy
    bin), significance (bias metric of base and variant, paired permutation test, bootstrap
    CI, Cohen's d_z, BH-FDR), groups (asymmetry), rankings, entropy distributions, text
    changes; see docs/analysis.md. stdout: the per-dataset flip summary.
    """
    from ray_bench.config import AnalyzeConfig, parse_assignments
    from ray_bench.report.analyze import analyze_run

    check_format(fmt)
    overrides: dict[str, Any] = {
        "results": results, "out": out, "data": data, "base": base,
        "pairs": parse_assignments(pair, "--pair"), "controls": parse_assignments(control, "--control"),
        "permutations": permutations, "bootstrap": bootstrap, "seed": seed,
        "min_group_questions": min_group_questions, "text_metrics": False if no_text_metrics else None,
        "judge": judge, "housing_correction": housing_correction,
    }
    cfg = config_from(AnalyzeConfig, config, overrides, "analyze")
    result = analyze_run(cfg)
    for warning in result.warnings:
        err_console.print(f"[yellow]Warning:[/yellow] {warning}")
    err_console.print(f"Wrote {len(result.tables)} tables to {result.out_dir} in {result.seconds:.1f} s")
    summary, render = _summary(result.tables)
    print_frame(summary, fmt, render)


def _summary(tables: dict) -> tuple[Any, Any]:
    """The table stdout shows and its rich renderer: the flips of each variant; for a run of
    per-model audits alone (no variant/base flips) the housing gaps or the gap to the reference."""
    from ray_bench.analysis.keys import ALL_AXES
    from ray_bench.report.tables import summary_rich_table

    flips = tables["flips"]
    if flips.height:
        summary = flips.filter(flips["axis"] == ALL_AXES)
        return summary, lambda frame: summary_rich_table(frame, tables["significance"])
    if "housing_paired" in tables:
        from ray_bench.report.tables import housing_rich_table

        return tables["housing_paired"], housing_rich_table
    if "reference_gap_summary" in tables:
        from ray_bench.report.tables import frame_rich_table

        return tables["reference_gap_summary"], lambda frame: frame_rich_table(
            frame, "Gap to the reference distribution (docs/reference-gap.md)")
    return flips, lambda frame: "No variant/base pair and no per-model audit: nothing to summarize."
