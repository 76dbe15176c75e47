"""`ray-bench demo`: the whole path offline on CPU in a few minutes, ending with the report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from ray_bench.cli.common import err_console, out_console

EPILOG = "Examples:\n\n  ray-bench demo\n\n  ray-bench demo --out /tmp/rb-demo --fresh"


def demo(
    out: Annotated[Path, typer.Option("--out", help="Working directory of the demo.")] = Path("demo-out"),
    fresh: Annotated[bool, typer.Option("--fresh", help="Delete --out first (else finished shards are reused).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
) -> None:
    """Make a tiny base model and its RTN W4A16 / W8A16 variants, run the bundled sample
    questions through local Ray with the HF engine (plus the base in bfloat16 as a control),
    analyze, and write the HTML report; prints the summary table and the report's path."""
    from ray_bench.analysis.keys import ALL_AXES
    from ray_bench.demo.pipeline import run_demo
    from ray_bench.report.tables import summary_rich_table

    started = time.time()
    result = run_demo(out, fresh=fresh, progress=not quiet)
    flips = result.tables["flips"]
    out_console.print(summary_rich_table(flips.filter(flips["axis"] == ALL_AXES), result.tables["significance"]))
    steps = ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items())
    err_console.print(
        f"Demo finished in {time.time() - started:.1f}s ({steps}). Variants: {', '.join(result.variants)}. "
        f"Results: {result.out_dir / 'runs'}; tables: {result.out_dir / 'analysis'}"
    )
    err_console.print("Report:")
    typer.echo(str(result.report))
