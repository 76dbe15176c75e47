"""`ray-bench judge`: a safety judge (Llama Guard) over the open-ended answers of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ray_bench.cli.common import config_from, out_console

EPILOG = (
    "Examples:\n\n"
    "  ray-bench judge --results runs/r1\n\n"
    "  ray-bench judge --results runs/r1 --judge lg3=./models/Llama-Guard-3-8B --engine vllm\n\n"
    "  ray-bench judge --results runs/r1 --model base --model base-rtn-w4a16 --judge-turns last\n\n"
    "  ray-bench judge --config jobs/judge.yaml"
)


def judge(
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML with JudgeConfig fields; flags override it.")] = None,
    results: Annotated[Optional[Path], typer.Option("--results", help="The --out directory of `ray-bench run`.")] = None,
    judge_model: Annotated[
        Optional[str], typer.Option("--judge", help="[NAME=]PATH of the judge (default: meta-llama/Llama-Guard-3-8B).")
    ] = None,
    engine: Annotated[Optional[str], typer.Option("--engine", help="hf, vllm, dummy or module:factory.")] = None,
    model: Annotated[Optional[list[str]], typer.Option("--model", help="Judge only this model's answers; repeatable.")] = None,
    judge_turns: Annotated[
        Optional[str], typer.Option("--judge-turns", help="Multi-turn answers: all (default) or last (the reference).")
    ] = None,
    no_score: Annotated[bool, typer.Option("--no-score", help="Skip p_unsafe (one scoring pass fewer).")] = False,
    data: Annotated[Optional[Path], typer.Option("--data", help="Prepared questions (default: the run's).")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, gpu or cpu (what judge actors reserve).")] = None,
    dtype: Annotated[Optional[str], typer.Option("--dtype", help="auto, float32, bfloat16, float16.")] = None,
    address: Annotated[Optional[str], typer.Option("--address", help="Ray cluster address (default: RAY_ADDRESS or local).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
) -> None:
    """Judge every open-ended answer of a run that is not judged yet (resumable shard by shard).

    Verdicts go beside the answers: RESULTS/<model>/<dataset>/judge-<name>/shard-NNNNN.parquet
    (is_safe, categories, raw text, p_unsafe, judge_error), recorded in RESULTS/manifest.json.
    """
    from ray_bench.cli.run import print_summary, raise_for_failures
    from ray_bench.config import JudgeConfig
    from ray_bench.runner import judge as run_judge

    overrides: dict[str, Any] = {
        "results": results, "models": model, "data_dir": data, "ray_address": address,
        "judge": {
            "model": judge_model, "judge_turns": judge_turns, "score": False if no_score else None,
            "engine": {"name": engine, "dtype": dtype}, "resources": {"device": device},
        },
    }
    cfg = config_from(JudgeConfig, config, overrides, "judge")
    summary = run_judge(cfg, progress=not quiet)
    print_summary(summary)
    out_console.print(str(summary.out_dir))
    raise_for_failures(summary)
