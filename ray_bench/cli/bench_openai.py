"""``ray-bench bench openai``: the openai engine's requests/s at concurrency 1, 8, 32 (registered in cli/bench.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ray_bench.cli.common import log_dim, out_console, parse_int_list, write_json_report

if TYPE_CHECKING:
    from ray_bench.bench.openai import OpenAIBenchResult

EPILOG = (
    "Examples:\n\n"
    "  ray-bench bench openai\n\n"
    "  ray-bench bench openai --stub-latency-ms 20 --requests 128 --rounds 5\n\n"
    "  ray-bench bench openai --base-url http://127.0.0.1:8000/v1 --model tiny --concurrency 1,8,32 --json openai.json\n\n"
    "  ray-bench bench openai --base-url https://api.openai.com/v1 --model gpt-4o-mini --api-key-env OPENAI_API_KEY "
    "--requests 16 --rounds 1"
)


def openai_bench(
    base_url: Annotated[Optional[str], typer.Option("--base-url", help="Server API root (default the built-in stub).")] = None,
    model: Annotated[str, typer.Option("--model", help="Served model name.")] = "stub",
    api_key_env: Annotated[
        Optional[str], typer.Option("--api-key-env", help="Variable holding the key (default none, no auth).")
    ] = None,
    requests: Annotated[int, typer.Option("--requests", min=1, help="Requests per level per round.")] = 64,
    concurrency: Annotated[str, typer.Option("--concurrency", help="Comma-separated levels.")] = "1,8,32",
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Interleaved rounds (order rotates); best shown.")] = 3,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, help="Tokens per reply (greedy).")] = 16,
    stub_latency_ms: Annotated[float, typer.Option("--stub-latency-ms", min=0.0, help="The stub's latency.")] = 50.0,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the results as JSON here.")] = None,
) -> None:
    """Time the openai engine's generate() at several concurrency levels against one server.

    One engine per level (max_concurrency = the level) sends --requests single-turn prompts per
    round; rounds interleave the levels, rotating their order. Prints requests/s (best and median
    round) and the ratio of each level's best to the first level's. Without --base-url a local
    stub answers every request after --stub-latency-ms (ideal rate: concurrency / latency).
    """
    from ray_bench.bench.openai import OpenAIBenchOptions, run_openai_benchmark

    levels = parse_int_list(concurrency, "--concurrency", "1,8,32")
    options = OpenAIBenchOptions(base_url=base_url, model=model, api_key_env=api_key_env, requests=requests,
                                 levels=levels, rounds=rounds, max_new_tokens=max_new_tokens,
                                 stub_latency_s=stub_latency_ms / 1000)
    result = run_openai_benchmark(options, log=log_dim)
    print_openai_report(result)
    if json_path is not None:
        write_json_report(json_path, result.as_dict())
    if not result.all_ok:
        raise typer.Exit(1)


def print_openai_report(result: OpenAIBenchResult) -> None:
    """The header and the table, on stdout."""
    from rich.table import Table

    opts = result.options
    out_console.print(f"openai engine against {result.server}, model {opts.model!r}: {opts.requests} single-turn "
                      f"requests per level per round, max_new_tokens {opts.max_new_tokens}, {opts.rounds} round(s), "
                      "levels interleaved (order rotated per round), best round shown", highlight=False, markup=False)
    table = Table(title="Requests per second by concurrency", title_justify="left")
    for col in ("concurrency", "best req/s", "median req/s", "rounds req/s", "ratio to first", "errors", "retries"):
        table.add_column(col, justify="right")
    for level in result.levels:
        rates = ", ".join(f"{r:.1f}" for r in level.rates(opts.requests))
        table.add_row(str(level.concurrency), f"{result.best_rate(level):.1f}", f"{result.median_rate(level):.1f}",
                      rates, f"{result.ratio(level):.2f}x", str(level.errors), str(level.retries))
    out_console.print(table)
    if opts.base_url is None and opts.stub_latency_s > 0:
        ideal = ", ".join(f"{lv.concurrency}: {lv.concurrency / opts.stub_latency_s:.0f}" for lv in result.levels)
        out_console.print(f"stub ideal (concurrency / latency) req/s: {ideal}", highlight=False, markup=False)
