"""`ray-bench export review|preferences`: flagged cases for human review (Argilla v2) and TRL preference data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ray_bench.cli.common import config_from, err_console, out_console

app = typer.Typer(no_args_is_help=True, help="Export flagged cases for review (Argilla v2) and TRL preference data "
                                            "(see docs/export.md).")

REVIEW_EPILOG = (
    "Examples:\n\n"
    "  ray-bench export review --analysis runs/r1/analysis --out review/\n\n"
    "  ray-bench export review --analysis runs/r1/analysis --out review/ --select unbiased-to-biased "
    "--select unsafe --limit 200 --seed 1\n\n"
    "  ray-bench export review --config jobs/review.yaml --dataset BBQ --json"
)
PREFERENCES_EPILOG = (
    "Examples:\n\n"
    "  ray-bench export preferences --reviewed reviewed/ --out prefs/\n\n"
    "  ray-bench export preferences --analysis runs/r1/analysis --out prefs-bbq/ --format standard --file-format jsonl"
)


@app.command("review", epilog=REVIEW_EPILOG)
def review(
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML with ReviewOptions fields; flags override it.")] = None,
    analysis: Annotated[Optional[Path], typer.Option("--analysis", help="The --out directory of `ray-bench analyze`.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Where to write the review dataset.")] = None,
    select: Annotated[Optional[list[str]], typer.Option(
        "--select", help="bias-flips, unbiased-to-biased, biased-to-unbiased, flips, biased, safety-flips, unsafe "
                         "or all; repeatable (default: bias-flips).")] = None,
    dataset: Annotated[Optional[list[str]], typer.Option("--dataset", help="Only this dataset or subset; repeatable.")] = None,
    variant: Annotated[Optional[list[str]], typer.Option("--variant", help="Only this variant; repeatable.")] = None,
    include_controls: Annotated[bool, typer.Option("--include-controls", help="Also export controls.")] = False,
    limit: Annotated[Optional[int], typer.Option("--limit", help="At most N records (a seeded random sample).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of the --limit sample (default: 0).")] = None,
    results: Annotated[Optional[Path], typer.Option("--results", help="The run (default: the analysis's).")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Prepared questions (default: the analysis's).")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Argilla dataset name (default: ray-bench-review).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Write the flagged cases of an analysis as a Hugging Face dataset in Argilla v2's layout.

    One record per flagged (variant, question): fields instruction / response / base_response /
    choices, metadata (models, quantization, dataset, axis, group, labels, p_biased), and
    suggestions is_biased (score = probability of the suggested label, agent = the variant or
    the judge), preferred and new-response. Writes data/train-00000-of-00001.parquet,
    records.json, .argilla/settings.json, .argilla/dataset.json and review.json. stdout: the
    number of records per selection.
    """
    from ray_bench.export.review import ReviewOptions, export_review

    overrides = {"analysis": analysis, "out": out, "select": select, "datasets": dataset, "variants": variant,
                 "include_controls": True if include_controls else None, "limit": limit, "seed": seed,
                 "results": results, "data": data, "name": name}
    result = export_review(config_from(ReviewOptions, config, overrides, "export review"))
    err_console.print(f"Wrote {result.records.height} review records to {result.out_dir} "
                      f"(settings: {result.settings}) in {result.seconds:.1f} s")
    if as_json:
        typer.echo(json.dumps({"out": str(result.out_dir), "n_records": result.records.height,
                               "by_selection": result.counts}, indent=2))
    else:
        for selection, n in result.counts.items():
            out_console.print(f"{selection}\t{n}")


@app.command("preferences", epilog=PREFERENCES_EPILOG)
def preferences(
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML with PreferenceOptions fields; flags override it.")] = None,
    reviewed: Annotated[Optional[Path], typer.Option("--reviewed", help="A reviewed Argilla export (file or directory).")] = None,
    analysis: Annotated[Optional[Path], typer.Option("--analysis", help="An analysis: the BBQ rule, no review.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Where to write the preference data.")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="conversational or standard (default: conversational).")] = None,
    file_format: Annotated[Optional[str], typer.Option("--file-format", help="parquet or jsonl (default: parquet).")] = None,
    select: Annotated[Optional[list[str]], typer.Option("--select", help="With --analysis: which rows' questions (default: all).")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="With --analysis: prepared questions.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Turn reviewed records (or, without review, BBQ's rule) into TRL preference data.

    Reviewed: a submitted new-response rewrite is chosen over the variant's answer; without a
    rewrite, the answer the reviewers agree is `preferred` is chosen over the other. BBQ rule
    (ambiguous contexts): chosen = the unknown answer, rejected = the biased one. Writes
    data/train-00000-of-00001.<parquet|jsonl> with exactly prompt, chosen, rejected, and
    preferences.json (every pair's source). stdout: pairs per rule and skipped records.
    """
    from ray_bench.export.preferences import PreferenceOptions, export_preferences

    overrides = {"reviewed": reviewed, "analysis": analysis, "out": out, "format": fmt, "file_format": file_format,
                 "select": select, "data": data}
    result = export_preferences(config_from(PreferenceOptions, config, overrides, "export preferences"))
    err_console.print(f"Wrote {len(result.pairs)} preference pairs to {result.data_file} in {result.seconds:.1f} s")
    if as_json:
        typer.echo(json.dumps({"data_file": str(result.data_file), "n_pairs": len(result.pairs),
                               "by_rule": result.by_rule, "skipped": result.skipped}, indent=2))
    else:
        for rule, n in result.by_rule.items():
            out_console.print(f"pairs\t{rule}\t{n}")
        for why, n in result.skipped.items():
            out_console.print(f"skipped\t{why}\t{n}")
