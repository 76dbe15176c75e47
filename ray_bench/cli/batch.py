"""`ray-bench batch ...`: OpenAI Batch API request files, and their output files back into results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ray_bench.cli.common import config_from, engine_options, err_console, out_console

app = typer.Typer(no_args_is_help=True, help="OpenAI Batch API files: write requests, collect outputs (docs/engines-openai.md).")

REQUESTS_EPILOG = (
    "Examples:\n\n"
    "  ray-bench batch requests --data data/ --dataset Housing-v2 --model gpt4o=gpt-4o-2024-08-06 --out batch/gpt4o\n\n"
    "  ray-bench batch requests --data data/ --dataset Housing-v1 --model llama=meta-llama/Meta-Llama-3-8B-Instruct "
    "--provider-defaults --custom-id 'task-{run_id}' --out batch/llama\n\n"
    "  ray-bench batch requests --data data/ --dataset BiasLens-GenWhy --model m=served-name --temperature 0.7 "
    "--max-new-tokens 128 --limit 100 --out batch/m"
)
COLLECT_EPILOG = (
    "Examples:\n\n"
    "  ray-bench batch collect --requests batch/gpt4o --output batch/gpt4o/output-00000.jsonl "
    "--errors batch/gpt4o/errors-00000.jsonl --out runs/batch\n\n"
    "  ray-bench batch collect --requests batch/llama --output out.jsonl --out runs/batch && "
    "ray-bench analyze --results runs/batch --out runs/batch/analysis"
)


@app.command("requests", epilog=REQUESTS_EPILOG)
def requests(
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML with BatchRequestsConfig fields; flags override it.")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Prepared questions (`ray-bench datasets ...`).")] = None,
    dataset: Annotated[Optional[list[str]], typer.Option("--dataset", help="Open dataset or family; repeatable.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="NAME=SERVED_NAME: results name and request model.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Directory of the request files and index.json.")] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", help="0 = greedy (default 0).")] = None,
    top_p: Annotated[Optional[float], typer.Option("--top-p", help="Nucleus mass (default 1).")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option("--max-new-tokens", help="Token limit (default 256).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed; each request gets its own from it.")] = None,
    reference_decoding: Annotated[
        Optional[bool], typer.Option("--reference-decoding", help="The reference benchmark's decoding (T=1, seed 1).")
    ] = None,
    provider_defaults: Annotated[
        Optional[bool], typer.Option("--provider-defaults", help="Send no decoding (the housing reference's files).")
    ] = None,
    system_prompt: Annotated[Optional[str], typer.Option("--system-prompt", help="System message (default none).")] = None,
    engine_option: Annotated[
        Optional[list[str]], typer.Option("--engine-option", help="openai engine KEY=VALUE (max_tokens_field, extra_body, ...).")
    ] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="First N questions of each dataset.")] = None,
    custom_id: Annotated[
        Optional[str], typer.Option("--custom-id", help="custom_id template (default {question_id}), e.g. task-{run_id}.")
    ] = None,
    shard_size: Annotated[Optional[int], typer.Option("--shard-size", help="Questions per result shard (default 1000).")] = None,
    max_lines: Annotated[Optional[int], typer.Option("--max-lines", help="Lines per file (default 50000).")] = None,
) -> None:
    """Write OpenAI Batch API request files for open questions (also vLLM's run_batch input).

    OUT/requests-NNNNN.jsonl (at most 50,000 lines and 200 MB each) and OUT/index.json (which
    question each custom_id is, the model and the decoding). The bodies are what
    `ray-bench run --engine openai` sends for the same questions. stdout: the files written.
    """
    from ray_bench.results.batch_requests import BatchRequestsConfig, write_batch_requests

    engine: dict[str, Any] = {"name": "openai", "temperature": temperature, "top_p": top_p,
                              "max_new_tokens": max_new_tokens, "seed": seed, "reference_decoding": reference_decoding,
                              "system_prompt": system_prompt, "options": engine_options(engine_option)}
    overrides = {"data_dir": data, "datasets": dataset, "model": model, "out_dir": out, "engine": engine,
                 "provider_defaults": provider_defaults, "limit": limit, "custom_id": custom_id,
                 "shard_size": shard_size, "max_lines": max_lines}
    cfg = config_from(BatchRequestsConfig, config, overrides, "batch requests")
    report = write_batch_requests(cfg)
    state = "unchanged" if report.unchanged else "written"
    err_console.print(f"{report.requests:,} request(s) of {', '.join(report.datasets)} in {len(report.files)} "
                      f"file(s) ({state}); index: {report.out_dir / 'index.json'}", highlight=False)
    for item in report.files:
        out_console.print(str(report.out_dir / item.name), highlight=False)


@app.command("collect", epilog=COLLECT_EPILOG)
def collect(
    requests_dir: Annotated[Path, typer.Option("--requests", help="The --out directory of `batch requests`.")],
    output: Annotated[list[Path], typer.Option("--output", help="A batch output file; repeatable.")],
    out: Annotated[Path, typer.Option("--out", help="Results directory (rerun with more files to resume).")],
    errors: Annotated[Optional[list[Path]], typer.Option("--errors", help="A batch error file; repeatable.")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Prepared questions (default the index's).")] = None,
) -> None:
    """Read batch output and error files into result shards (like `ray-bench run`'s), by custom_id.

    A shard is written once all its questions have a line (a reply or an error); shards already
    in OUT are kept, so collecting again with more files only adds what is new. stdout: OUT.
    """
    from ray_bench.config import build_config
    from ray_bench.results.batch import BatchCollectConfig, collect_batch

    cfg = build_config(BatchCollectConfig, {"requests": requests_dir, "outputs": output, "errors": errors or [],
                                            "out_dir": out, "data_dir": data}, "batch collect options")
    report = collect_batch(cfg)
    err_console.print(f"{len(report.written)} shard(s) written, {report.already_done} already there; "
                      f"{report.replies:,} reply(ies) and {report.errors:,} failed request(s) in the files",
                      highlight=False)
    if report.waiting:
        missing = sum(report.waiting.values())
        err_console.print(f"{len(report.waiting)} shard(s) wait for {missing:,} request(s) with no line yet, e.g. "
                          f"{next(iter(report.waiting))}: collect again with their output files", highlight=False)
    out_console.print(str(report.out_dir), highlight=False)
