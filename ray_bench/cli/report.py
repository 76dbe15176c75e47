"""`ray-bench report`: one self-contained HTML report (and every figure as SVG/PNG/CSV)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ray_bench.cli.common import err_console

EPILOG = (
    "Examples:\n\n"
    "  ray-bench report --analysis runs/r1/analysis\n\n"
    "  ray-bench report --analysis runs/r1/analysis --out paper/report.html --figures paper/figures\n\n"
    "  xdg-open \"$(ray-bench report --analysis runs/r1/analysis)\""
)


def report(
    analysis: Annotated[Path, typer.Option("--analysis", help="The --out directory of `ray-bench analyze`.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="The HTML file to write (default: ANALYSIS/report.html).")
    ] = None,
    figures: Annotated[
        Path | None,
        typer.Option("--figures",
                     help="Where to save each figure as SVG, PNG and CSV (default: figures/ beside the HTML)."),
    ] = None,
) -> None:
    """Write the analysis as one HTML page that opens offline; print its path to stdout.

    The page reproduces the paper's figures 2-5 and its uncertainty table, with the
    provenance and warnings of the analysis at the top. Each figure is also saved as SVG
    and PNG beside the CSV of exactly what it plots. Figures without data are listed as
    skipped.
    """
    from rich.markup import escape

    from ray_bench.report.html import write_report

    out = out if out is not None else analysis / "report.html"
    result = write_report(analysis, out, figures)
    err_console.print(f"Wrote {len(result.figures)} figures to {result.figures_dir}")
    for name, reason in result.skipped:
        err_console.print(f"[yellow]Skipped[/yellow] {escape(name)}: {escape(reason)}", highlight=False)
    err_console.print(f"Report: {result.html}")
    typer.echo(str(result.html))
