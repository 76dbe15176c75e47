"""`ray-bench analyze`: flips of every model against a base model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ray_bench.cli.common import err_console, out_console

EPILOG = (
    "Examples:\n\n"
    "  ray-bench analyze --results runs/r1 --base base --out runs/r1/analysis\n\n"
    "  ray-bench analyze --results runs/r1 --base base --out analysis/ --format csv > flips.csv"
)


def analyze(
    results: Annotated[Path, typer.Option("--results", help="The --out directory of `ray-bench run`.")],
    base: Annotated[str, typer.Option("--base", help="Name of the base model to compare against.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write flips.parquet and flips.csv.")],
    fmt: Annotated[str, typer.Option("--format", help="stdout format: table, csv or json.")] = "table",
) -> None:
    """Pair each model with the base on question_id; print and write flip rates per dataset.

    For each (model, dataset): questions paired, response flip rate, and by the base
    model's normalized-entropy bin (low <= 1/3 < medium <= 2/3 < high) the share of
    questions in the bin and the % of them that flipped.
    """
    from ray_bench import provenance
    from ray_bench.analysis import flip_table
    from ray_bench.errors import ConfigError
    from ray_bench.report.tables import flip_rich_table
    from ray_bench.results import read_results

    if fmt not in ("table", "csv", "json"):
        raise ConfigError(f"--format must be table, csv or json, got {fmt!r}")
    flips = flip_table(read_results(results), base)
    out.mkdir(parents=True, exist_ok=True)
    flips.write_parquet(out / "flips.parquet")
    flips.write_csv(out / "flips.csv")
    (out / "analysis.json").write_text(
        json.dumps(
            {"results": str(results.resolve()), "base": base, "tables": ["flips.parquet"],
             "provenance": provenance.collect()},
            indent=2,
        )
    )
    err_console.print(f"Wrote {out / 'flips.parquet'} and {out / 'flips.csv'}")
    if fmt == "table":
        out_console.print(flip_rich_table(flips, base))
    elif fmt == "csv":
        typer.echo(flips.write_csv(), nl=False)
    else:
        typer.echo(json.dumps(flips.to_dicts(), indent=2))
