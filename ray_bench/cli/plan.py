"""`ray-bench plan`: what `ray-bench run` with the same flags would do and cost, without running it."""

from __future__ import annotations

import inspect
from typing import Any

from ray_bench.cli import run as run_cmd
from ray_bench.cli.common import err_console, out_console

EPILOG = (
    "Examples:\n\n"
    "  ray-bench plan --config jobs/example_run.yaml --tokens-per-second 40000 --decode-tokens-per-second 2500\n\n"
    "  ray-bench plan --model base=./models/base --dataset BBQ --data data/ --out runs/r1"
)


def plan(**flags: Any) -> None:
    """Validate a run exactly as `ray-bench run` would and print its cost, reserving nothing.

    Per model and dataset: questions (and how many are still to run), prompt and choice tokens
    from the model's tokenizer, forward tokens after prefix sharing, the most tokens generated,
    and GPU-hours from --tokens-per-second / --decode-tokens-per-second. Takes every flag of
    `ray-bench run` (and its --config).
    """
    from ray_bench.runner import plan as plan_run

    report = plan_run(run_cmd._config_from_flags(flags))
    out_console.print(plan_table(report))
    err_console.print(report.summary_line, highlight=False, markup=False)


def plan_table(report: Any) -> Any:
    """The per (model, dataset) cost table, one total row per model."""
    from rich.table import Table

    table = Table(title="ray-bench plan (tokens of the questions still to run)")
    for name in ("model", "dataset", "questions", "to run", "prompt tok", "choice tok", "forward tok",
                 "without sharing", "generated ≤", "GPU-h"):
        table.add_column(name, justify="left" if name in ("model", "dataset") else "right")
    for model in dict.fromkeys(c.model for c in report.costs):
        rows = [c for c in report.costs if c.model == model]
        for c in rows:
            table.add_row(c.model, c.dataset, f"{c.questions:,}", f"{c.pending:,}", f"{c.prompt_tokens:,}",
                          f"{c.choice_tokens:,}", f"{c.forward_tokens:,}", f"{c.unshared_forward_tokens:,}",
                          f"{c.decode_tokens_max:,}", "")
        hours = report.gpu_hours.get(model)
        table.add_row(f"[bold]{model}[/bold]", "(all)", f"{sum(c.questions for c in rows):,}",
                      f"{sum(c.pending for c in rows):,}", f"{sum(c.prompt_tokens for c in rows):,}",
                      f"{sum(c.choice_tokens for c in rows):,}", f"{sum(c.forward_tokens for c in rows):,}",
                      f"{sum(c.unshared_forward_tokens for c in rows):,}", f"{sum(c.decode_tokens_max for c in rows):,}",
                      f"{hours:.3g}" if hours is not None else "-", end_section=True)
    sources = sorted({c.tokenizer for c in report.costs})
    table.caption = "tokens: " + "; ".join(sources)
    return table


# The same flags as `run`: one signature, so the two commands cannot drift apart.
plan.__signature__ = inspect.signature(run_cmd.run, eval_str=True)  # type: ignore[attr-defined]
