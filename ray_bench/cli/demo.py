"""`ray-bench demo`: the whole path offline on CPU in a few minutes."""

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
    """Make a tiny base model and a variant, run the bundled sample questions through
    local Ray with the HF engine, and print the flip table (base vs variant)."""
    from ray_bench.demo.pipeline import run_demo
    from ray_bench.report.tables import flip_rich_table

    started = time.time()
    result = run_demo(out, fresh=fresh, progress=not quiet)
    out_console.print(flip_rich_table(result.flips, "base"))
    steps = ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items())
    err_console.print(
        f"Demo finished in {time.time() - started:.1f}s ({steps}). Variant: {result.variant}. "
        f"Results: {result.out_dir / 'runs'}; table: {result.out_dir / 'flips.csv'}"
    )
