"""`ray-bench quantize`: make compressed-tensors variants of models with llmcompressor.

Progress and logs go to stderr; stdout gets one tab-separated line per variant:
``status  name  path  summary``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ray_bench.cli.common import err_console

EPILOG = (
    "Examples:\n\n"
    "  python -c 'from ray_bench.demo.tiny import build_tiny_model as b; b(\"tiny\")'\n\n"
    "  ray-bench quantize --model tiny=tiny --method rtn --scheme w4a16 --out models/\n\n"
    "  ray-bench quantize --model Qwen/Qwen2.5-0.5B-Instruct --method gptq --scheme w4a16 "
    "--calibration calib.jsonl --calibration-samples 128 --out models/\n\n"
    "  ray-bench quantize --config jobs/study_models.yaml --dry-run\n\n"
    "  ray-bench quantize --config jobs/study_models.yaml --quant-python .venv-quant/bin/python\n\n"
    "Methods: rtn, gptq, awq, smoothquant-rtn, smoothquant-gptq. Schemes: w4a16, w8a16, w8a8.\n"
    "Outputs are named <model>-<method>-<scheme>; see docs/quantize.md."
)


def quantize(
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML job file; flags override it.")] = None,
    model: Annotated[
        Optional[list[str]], typer.Option("--model", help="[NAME=]PATH_OR_HF_ID of a base model; repeatable.")
    ] = None,
    method: Annotated[Optional[str], typer.Option("--method", help="rtn, gptq, awq, smoothquant-rtn or smoothquant-gptq.")] = None,
    scheme: Annotated[Optional[str], typer.Option("--scheme", help="w4a16, w8a16 or w8a8.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Parent directory of the variants.")] = None,
    calibration: Annotated[
        Optional[str], typer.Option("--calibration", help="Hugging Face dataset id or local .txt/.jsonl/.parquet file.")
    ] = None,
    calibration_split: Annotated[Optional[str], typer.Option("--calibration-split", help="Hub dataset split.")] = None,
    calibration_field: Annotated[Optional[str], typer.Option("--calibration-field", help="Text column or JSON key.")] = None,
    calibration_samples: Annotated[Optional[int], typer.Option("--calibration-samples", help="Samples used (default 512).")] = None,
    calibration_max_length: Annotated[
        Optional[int], typer.Option("--calibration-max-length", help="Tokens per sample (default 6144).")
    ] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Calibration shuffle and run seed (default 0).")] = None,
    overwrite: Annotated[Optional[bool], typer.Option("--overwrite", help="Replace complete outputs.")] = None,
    skip_existing: Annotated[Optional[bool], typer.Option("--skip-existing", help="Keep complete outputs, report them.")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu or gpu (Ray tasks).")] = None,
    gpus_per_task: Annotated[Optional[float], typer.Option("--gpus-per-task", help="GPUs per variant (GPU mode).")] = None,
    cpus_per_task: Annotated[Optional[float], typer.Option("--cpus-per-task", help="CPUs per variant (CPU mode).")] = None,
    max_parallel: Annotated[Optional[int], typer.Option("--max-parallel", help="At most this many variants at once.")] = None,
    quant_python: Annotated[
        Optional[str], typer.Option("--quant-python", help="python of the llmcompressor venv (else $RAY_BENCH_QUANT_PYTHON).")
    ] = None,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Existing Ray cluster.")] = None,
    executor: Annotated[
        str, typer.Option("--executor", help="auto (in-process for one variant when llmcompressor is here), local or ray.")
    ] = "auto",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and print the variants, make nothing.")] = False,
) -> None:
    """Make quantized variants (compressed-tensors checkpoints with a quantization card).

    Every --model is quantized with the given --method/--scheme, or with every variant
    of --config. Invalid names or combinations, missing calibration files and existing
    outputs are refused before any model is loaded. Several variants run in parallel as
    Ray tasks in the quantization environment (--quant-python); a failed variant is
    reported and the others continue; the exit status is 1 when any failed.
    """
    from ray_bench.config import build_config, load_yaml, merge_overrides
    from ray_bench.quantize.config import QuantizeJobConfig

    flags = _overrides(locals())
    data = merge_overrides(load_yaml(config), flags)
    job = build_config(QuantizeJobConfig, data, f"config {config}" if config else "options")
    from ray_bench.quantize.plan import expand

    tasks = expand(job)
    if dry_run:
        for task in tasks:
            typer.echo(f"planned\t{task.name}\t{task.target}\t{task.model.path}")
        return
    results = _execute(job, tasks, _choose_executor(executor, job, tasks))
    _finish(results)


def _overrides(args: dict[str, Any]) -> dict[str, Any]:
    """Flags as a nested dict in the config's shape; ``None`` means not given."""
    from ray_bench.errors import ConfigError

    if (args["method"] is None) != (args["scheme"] is None):
        raise ConfigError("--method and --scheme go together", hint="Give both, or neither with --config.")
    variants = [{"method": args["method"], "scheme": args["scheme"]}] if args["method"] else None
    return {
        "models": args["model"] or None,
        "variants": variants,
        "out_dir": args["out"],
        "overwrite": args["overwrite"],
        "skip_existing": args["skip_existing"],
        "ray_address": args["ray_address"],
        "calibration": {
            "source": args["calibration"],
            "split": args["calibration_split"],
            "text_field": args["calibration_field"],
            "num_samples": args["calibration_samples"],
            "max_seq_length": args["calibration_max_length"],
            "seed": args["seed"],
        },
        "resources": {
            "device": args["device"],
            "gpus_per_task": args["gpus_per_task"],
            "cpus_per_task": args["cpus_per_task"],
            "max_parallel": args["max_parallel"],
        },
        "environment": {"python": args["quant_python"]},
    }


def _choose_executor(executor: str, job: Any, tasks: list) -> str:
    """``local`` (this process, sequential) or ``ray``."""
    import importlib.util

    from ray_bench.errors import ConfigError

    if executor not in ("auto", "local", "ray"):
        raise ConfigError(f"--executor must be auto, local or ray, got {executor!r}")
    if executor != "auto":
        return executor
    from ray_bench.runner.quantize_tasks import runtime_env_for

    # A separate quantization environment or a cluster means Ray tasks, never this process.
    elsewhere = runtime_env_for(job.environment) is not None or job.ray_address
    here = importlib.util.find_spec("llmcompressor") is not None
    return "local" if len(tasks) == 1 and here and not elsewhere else "ray"


def _execute(job: Any, tasks: list, executor: str) -> list:
    def report(result: Any) -> None:
        style = {"ok": "green", "skipped": "yellow"}.get(result.status, "red")
        err_console.print(f"[{style}]{result.status}[/{style}] {result.name} ({result.wall_time_s:.1f} s)")

    err_console.print(f"Quantizing {len(tasks)} variant(s) ({executor}) into {job.out_dir}")
    if executor == "local":
        return [_run_local(task, job.skip_existing, report) for task in tasks]
    from ray_bench.runner.quantize_tasks import run_quantize_tasks

    return run_quantize_tasks(
        tasks,
        resources=job.resources,
        environment=job.environment,
        ray_address=job.ray_address,
        skip_existing=job.skip_existing,
        on_result=report,
    )


def _run_local(task: Any, skip_existing: bool, report: Any) -> Any:
    from ray_bench.quantize.card import read_card
    from ray_bench.quantize.output import is_complete
    from ray_bench.quantize.plan import VariantResult
    from ray_bench.runner.quantize_tasks import run_variant

    if skip_existing and is_complete(task.target):
        result = VariantResult(task.name, "skipped", str(task.target), card=read_card(task.target))
    else:
        result = run_variant(task, None)
    report(result)
    return result


def _finish(results: list) -> None:
    from ray_bench.errors import QuantizationError
    from ray_bench.quantize.card import summarize_card

    for r in results:
        if r.status == "failed":
            typer.echo(f"failed\t{r.name}\t-\t{r.error}")
            if r.hint:
                err_console.print(f"  hint: {r.hint}", markup=False, highlight=False)
        else:
            typer.echo(f"{r.status}\t{r.name}\t{r.path}\t{summarize_card(r.card) if r.card else ''}")
    failed = [r for r in results if r.status == "failed"]
    if failed:
        first = failed[0]
        raise QuantizationError(
            f"{len(failed)} of {len(results)} variants failed ({', '.join(r.name for r in failed)}); "
            f"first: {first.error}",
            hint=first.hint,
        )
