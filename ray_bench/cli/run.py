"""`ray-bench run`: models x datasets through Ray actors into resumable Parquet shards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ray_bench.cli.common import config_from, engine_options, err_console, out_console

EPILOG = (
    "Examples:\n\n"
    "  ray-bench run --model base=./models/base --model q=./models/base-rtn-w4a16 "
    "--dataset BBQ --dataset CEB-Recognition --data data/ --out runs/r1\n\n"
    "  ray-bench run --config jobs/example_run.yaml --limit 100\n\n"
    "  ray-bench run --model m=./models/base --dataset BBQ --data data/ --out runs/dry --engine dummy\n\n"
    "  ray-bench run --model base=./models/base --dataset CEB-Continuation --data data/ --out runs/r1 "
    "--judge meta-llama/Llama-Guard-3-8B\n\n"
    "  ray-bench run --model base=./models/base --model base-rtn-w4a16=./models/base-rtn-w4a16 --dataset BBQ "
    "--data data/ --out runs/r2 --shuffle-seed 0 --stop-when-shifted --shift-option alpha=0.05\n\n"
    "  ray-bench run --model gpt4o=gpt-4o-2024-08-06 --dataset Housing-v2 --data data/ --out runs/api --engine openai"
)


def run(
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML with RunConfig fields; flags override it.")] = None,
    model: Annotated[Optional[list[str]], typer.Option("--model", help="[NAME=]PATH or HF id; repeat for several.")] = None,
    dataset: Annotated[Optional[list[str]], typer.Option("--dataset", help="Dataset or family name; repeatable.")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Directory from `ray-bench datasets prepare`.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Results directory (rerun to resume).")] = None,
    engine: Annotated[Optional[str], typer.Option("--engine", help="hf, vllm, dummy or module:factory.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="First N questions of each dataset.")] = None,
    shard_size: Annotated[Optional[int], typer.Option("--shard-size", help="Questions per shard.")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, gpu or cpu (what actors reserve).")] = None,
    replicas: Annotated[Optional[int], typer.Option("--replicas", help="Actors per model.")] = None,
    dtype: Annotated[Optional[str], typer.Option("--dtype", help="auto, float32, bfloat16, float16.")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option("--max-new-tokens", help="Generation limit per turn.")] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", help="0 = greedy.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of sampling; recorded.")] = None,
    engine_option: Annotated[Optional[list[str]], typer.Option("--engine-option", help="Engine-specific KEY=VALUE.")] = None,
    bbq_context: Annotated[Optional[str], typer.Option("--bbq-context", help="ambig (default), disambig or all.")] = None,
    address: Annotated[Optional[str], typer.Option("--address", help="Ray cluster address (default: RAY_ADDRESS or local).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 when any question got an error row (they are kept and listed anyway).")
    ] = False,
    judge: Annotated[
        Optional[str], typer.Option("--judge", help="[NAME=]PATH of a safety judge: judge open answers in the same job.")
    ] = None,
    reference_decoding: Annotated[
        Optional[bool],
        typer.Option("--reference-decoding", help="Decode open questions as the reference did (T=1, seed 1, 512 tokens)."),
    ] = None,
    shuffle_seed: Annotated[
        Optional[int], typer.Option("--shuffle-seed", help="Shard each dataset's questions in this seeded random order.")
    ] = None,
    recompute_bad: Annotated[
        Optional[bool],
        typer.Option("--recompute-bad", help="Move damaged shard files to OUT/bad-shards/ and recompute them."),
    ] = None,
    root: Annotated[
        Optional[Path], typer.Option("--root", help="Resolve relative --data, --out and ./model paths against DIR.")
    ] = None,
    tokens_per_second: Annotated[
        Optional[float], typer.Option("--tokens-per-second", help="Forward tokens/s of one GPU, for the GPU-hour estimate.")
    ] = None,
    decode_tokens_per_second: Annotated[
        Optional[float], typer.Option("--decode-tokens-per-second", help="Generated tokens/s of one GPU (estimate).")
    ] = None,
    stop_when_shifted: Annotated[
        bool,
        typer.Option("--stop-when-shifted",
                     help="Stop a variant's shards once the anytime-valid shift test against its base decides "
                          "(needs --shuffle-seed; docs/audit.md)."),
    ] = False,
    shift_option: Annotated[
        Optional[list[str]],
        typer.Option("--shift-option", help="Shift test KEY=VALUE (implies --stop-when-shifted): metric, alpha, "
                                            "epsilon, alternative, method, base, pair=VARIANT:BASE; repeatable."),
    ] = None,
) -> None:
    """Run models over datasets on Ray; finished shards are skipped on rerun.

    Closed questions get per-choice log-probability scores, open prompts get
    generations. Results: OUT/<model>/<dataset>/shard-NNNNN.parquet and OUT/manifest.json.
    With --judge, open answers are judged as their shards land (one GPU: after answering)
    into OUT/<model>/<dataset>/judge-<name>/shard-NNNNN.parquet.
    """
    from ray_bench.runner import run as run_pipeline

    cfg = _config_from_flags(locals())
    summary = run_pipeline(cfg, progress=not quiet, on_plan=lambda report: err_console.print(
        report.summary_line, highlight=False, markup=False))
    print_summary(summary)
    print_shift_tests(summary)
    out_console.print(str(summary.out_dir))
    raise_for_failures(summary, strict)


def _config_from_flags(flags: dict[str, Any]) -> Any:
    """The :class:`RunConfig` of ``run``'s (and ``plan``'s) flags over ``--config``."""
    f = flags
    model, dataset, data, out, limit, shard_size = f["model"], f["dataset"], f["data"], f["out"], f["limit"], f["shard_size"]
    engine, dtype, max_new_tokens, temperature, seed = f["engine"], f["dtype"], f["max_new_tokens"], f["temperature"], f["seed"]
    engine_option, reference_decoding, bbq_context, address = (f["engine_option"], f["reference_decoding"],
                                                                f["bbq_context"], f["address"])
    device, replicas, shuffle_seed, judge, recompute_bad, root = (f["device"], f["replicas"], f["shuffle_seed"], f["judge"],
                                                                 f["recompute_bad"], f["root"])
    engine_overrides = {
        "name": engine, "dtype": dtype, "max_new_tokens": max_new_tokens,
        "temperature": temperature, "seed": seed, "options": engine_options(engine_option),
        "reference_decoding": reference_decoding,
    }
    overrides = {
        "models": model, "datasets": dataset, "data_dir": data, "out_dir": out, "limit": limit,
        "shard_size": shard_size, "bbq_context": bbq_context, "ray_address": address, "seed": seed,
        "engine": engine_overrides, "resources": {"device": device, "replicas": replicas},
        "shuffle_seed": shuffle_seed, "judge": {"model": judge} if judge else None, "recompute_bad": recompute_bad,
        "root": root,
        "throughput": {"forward_tokens_per_s": f["tokens_per_second"],
                       "decode_tokens_per_s": f["decode_tokens_per_second"]},
        "stop_when_shifted": shift_stop_spec(f["stop_when_shifted"], f["shift_option"]),
    }
    from ray_bench.config import RunConfig

    return config_from(RunConfig, f["config"], overrides, "run")


def shift_stop_spec(enabled: bool, items: list[str] | None) -> dict[str, Any] | None:
    """``--stop-when-shifted`` and ``--shift-option KEY=VALUE`` (e.g. ``alpha=0.01``, ``pair=q4:base``)
    as ``stop_when_shifted`` config fields; ``None`` when neither is given (the YAML decides)."""
    if not enabled and not items:
        return None
    from ray_bench.errors import ConfigError

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ConfigError(f"--shift-option {item!r} is not KEY=VALUE",
                              hint="E.g. --shift-option alpha=0.01 --shift-option pair=q4:base")
        if key == "pair":
            variant, colon, base = value.partition(":")
            if not colon or not variant or not base:
                raise ConfigError(f"--shift-option pair={value!r} is not VARIANT:BASE")
            out.setdefault("pairs", {})[variant] = base
        else:
            out[key] = value  # pydantic converts and checks (an unknown key is refused by name)
    return out


def print_summary(summary: Any) -> None:
    """The run's counts, question errors and verdicts, on stderr."""
    where = f"on {summary.device}" if summary.device else "nothing left to run"
    err_console.print(
        f"{summary.done} shard(s) computed, {summary.skipped} already done, "
        f"{len(summary.failed)} failed ({where}) in {summary.seconds:.1f}s"
    )
    for (model_name, dataset_name), count in sorted(summary.question_errors.items()):
        err_console.print(
            f"{model_name} / {dataset_name}: {count} question(s) got an error (the 'error' column of their rows)",
            highlight=False, markup=False,
        )
    for (model_name, dataset_name), (judged, unsafe, unparsed) in sorted(summary.judged.items()):
        err_console.print(
            f"{model_name} / {dataset_name}: {judged} answer(s) judged, {unsafe} unsafe"
            + (f", {unparsed} judge output(s) not a verdict (judge_error)" if unparsed else ""),
            highlight=False, markup=False,
        )


def print_shift_tests(summary: Any) -> None:
    """Each ``--stop-when-shifted`` test's decision and what it saved, on stderr."""
    for entry in summary.shift_tests.values():
        who = f"{entry['variant']} vs {entry['base']} / {entry['dataset']} ({entry['metric']})"
        threshold = 1 / entry["alpha_test"]
        if entry["decision"] == "shift":
            stop = entry["stop"]
            line = (f"{who}: shift detected at {stop['shard']} after {stop['pairs']} paired questions "
                    f"(e-value {stop['e_value']:.3g} >= {threshold:.3g}); {entry['questions_not_run']} of "
                    f"{entry['planned_questions']} questions not run ({100 * entry['saved_fraction']:.0f}%)")
        else:
            state = "no shift detected" if entry["decision"] == "no shift" else "undecided (shards missing)"
            e_value = entry["e_value"] if entry["e_value"] is not None else 1.0
            line = f"{who}: {state} over {entry['pairs']} paired questions (e-value {e_value:.3g} < {threshold:.3g})"
        err_console.print(line, highlight=False, markup=False)


def raise_for_failures(summary: Any, strict: bool = False) -> None:
    """One error for load failures, failed shards or (``strict``) question errors."""
    from ray_bench.errors import RayBenchError

    if summary.load_errors:
        error = next(iter(summary.load_errors.values()))
        others = len(summary.load_errors) - 1
        raise RayBenchError(
            f"{error}" + (f" (and {others} more model(s) could not be loaded)" if others else ""),
            hint=f"{error.hint} Other models' shards were kept; rerun the same command to retry the failed ones.",
        )
    if summary.failed:
        first = next(iter(summary.failed.items()))
        raise RayBenchError(
            f"{len(summary.failed)} shard(s) failed; first {first[0]}: {first[1]}",
            hint="Fix the cause and rerun the same command: finished shards are kept, failed ones retried.",
        )
    if strict and summary.question_errors:
        total = sum(summary.question_errors.values())
        raise RayBenchError(
            f"--strict: {total} question(s) got an error in {len(summary.question_errors)} (model, dataset) pair(s)",
            hint="The rows are kept with their error; fix the cause and rerun into a fresh --out to recompute them.",
        )
