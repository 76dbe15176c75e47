"""The analysis benchmark behind ``ray-bench bench analysis``.

It builds a synthetic results set shaped like the full study (:func:`build_study`): 10
base models with 5 quantized variants each (60 models) x 85,823 questions, each dataset
with its real number of choices, axes and a few social groups, BBQ ambiguous-context
only, open-ended datasets with short generated answers. Then, round by round with the
order alternating (these machines are noisy), each approach runs in a fresh subprocess
whose peak RSS is read from ``wait4``:

* ``analyze``: the whole :func:`ray_bench.report.analyze.analyze_run` (every table, every
  test, tables written);
* ``flips``: what the flip and entropy tables need, alone: ``scan_run``, pairing, the
  closed per-row fields, ``flip_table``, ``uncertainty_table`` and the three entropy tables;
* ``pandas``: the flip table as the reference computes it: shards read with pandas,
  prediction and normalized entropy per row with ``apply``, each quantized model merged
  with its (re-loaded) base on the question id, then ``groupby``.

The pandas flip and uncertainty numbers must equal ours (a correctness check of both).
The best round of each approach is reported with the ratios against the targets.

The study builder is in :mod:`ray_bench.bench.study` (its datasets in
:mod:`ray_bench.bench.study_questions`) and the approaches in
:mod:`ray_bench.bench.analysis_steps`; this module runs the approaches in subprocesses and
summarizes them. The public names of those modules are re-exported here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ray_bench.bench.analysis_steps import (
    CHECK_TOL,
    compare_flip_tables,
    run_analyze,
    run_flips,
    run_pandas,
    run_profile,
)
from ray_bench.bench.study import (
    BASE_MODELS,
    OPEN_WORDS,
    RECIPES,
    STUDY_STAMP,
    _reuse_or_build,
    _study_params,
    build_study,
    model_names,
    study_shape,
)
from ray_bench.bench.study_questions import BBQ_AMBIG, STUDY_QUESTIONS, SubsetShape, study_subsets

__all__ = [
    "APPROACHES", "BASE_MODELS", "BBQ_AMBIG", "CHECK_TOL", "OPEN_WORDS", "RECIPES", "STUDY_QUESTIONS", "STUDY_STAMP",
    "TARGETS", "SubsetShape", "build_study", "compare_flip_tables", "default_rss_cap", "model_names", "run_analyze",
    "run_benchmark", "run_child", "run_flips", "run_pandas", "run_profile", "study_shape", "study_subsets",
]

#: Targets of the issue, on 2 cores.
TARGETS = {"flips_s": 15.0, "analyze_s": 60.0, "peak_rss_bytes": 4 * 1024**3, "speedup_vs_pandas": 5.0}
#: Approaches in table order, with their labels.
APPROACHES = {
    "analyze": "ours: whole analyze_run (all tables, all tests, written)",
    "flips": "ours: flip + uncertainty + entropy tables (scan, pair, tables)",
    "pandas": "pandas, reference style: row-wise apply, merge per variant, groupby",
}


# ------------------------------------------------------------------------ subprocesses

def _child_main(argv: list[str]) -> None:
    """Entry of one timed subprocess: ``python -m ray_bench.bench.analysis MODE ARGS_JSON RESULT_JSON``."""
    mode, args, result_path = argv[0], json.loads(argv[1]), Path(argv[2])
    results = Path(args["results"])
    out = Path(args["out"]) if args.get("out") else None
    if mode == "analyze":
        assert out is not None
        result = run_analyze(results, out, int(args["permutations"]))
    elif mode == "flips":
        result = run_flips(results, out)
    elif mode == "pandas":
        result = run_pandas(results, out, args.get("variants"))
    elif mode == "profile":
        result = run_profile(results, int(args["permutations"]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    result_path.write_text(json.dumps(result))


def default_rss_cap() -> int:
    """RSS at which a benchmark step is stopped: 3/4 of the machine's memory, at most 16 GiB.

    A step that runs away is killed by the watchdog, not left to the kernel's OOM killer,
    which may pick another process of the machine.
    """
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = 16 * 1024**3
    return int(min(16 * 1024**3, 0.75 * total))


def _rss_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def run_child(mode: str, args: dict[str, Any], work: Path, *, max_rss_bytes: int | None = None) -> dict[str, Any]:
    """Run one approach in a fresh Python process; its result plus wall time and peak RSS (``wait4``).

    The child is killed when its RSS passes ``max_rss_bytes`` (default :func:`default_rss_cap`);
    the result then has ``failed`` set and ``seconds`` ``None``.

    Raises:
        RuntimeError: the child failed for another reason (its stderr's tail is in the message).
    """
    cap = max_rss_bytes or default_rss_cap()
    result_path = work / f"child-{mode}.json"
    if result_path.exists():
        result_path.unlink()
    if args.get("out"):
        shutil.rmtree(args["out"], ignore_errors=True)  # no stale tables from an earlier round
    cmd = [sys.executable, "-m", "ray_bench.bench.analysis", mode, json.dumps(args), str(result_path)]
    started = time.perf_counter()
    killed_at = 0
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
        # wait4 gives this child's own rusage (RUSAGE_CHILDREN would be the max over all children).
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            rss = _rss_of(proc.pid)
            if rss > cap and not killed_at:
                killed_at = rss
                proc.kill()
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        tail = stderr.read().decode(errors="replace")[-4000:]
    wall = time.perf_counter() - started
    peak = int(usage.ru_maxrss) * 1024  # Linux reports KiB
    if killed_at:
        return {"failed": True, "seconds": None, "process_seconds": wall, "peak_rss_bytes": max(peak, killed_at),
                "reason": f"killed after {wall:.0f} s: RSS passed the cap of {cap / 2**30:.1f} GiB"}
    if proc.returncode != 0 or not result_path.is_file():
        raise RuntimeError(f"benchmark step {mode!r} failed with exit code {proc.returncode}:\n{tail}")
    result = json.loads(result_path.read_text())
    result["process_seconds"] = wall
    result["peak_rss_bytes"] = peak
    return result


# -------------------------------------------------------------------------- benchmark

def _spread(items: list[str], k: int) -> list[str]:
    """``k`` items spread evenly over ``items`` (every base's variants get a share)."""
    if k >= len(items):
        return list(items)
    idx = np.linspace(0, len(items) - 1, k).round().astype(int)
    return [items[i] for i in sorted(set(idx))]


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def run_benchmark(rounds: int = 3, scale: float = 1.0, permutations: int = 1000, *, n_bases: int = 10,
                  variants_per_base: int = 5, seed: int = 0, work_dir: str | Path | None = None, keep: bool = False,
                  pandas_variants: int | None = None, shard_size: int | None = None, profile: bool | None = None,
                  max_rss_bytes: int | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build the study once, then time the three approaches round by round (order alternating).

    Args:
        rounds: Timed rounds; the best of each approach is reported.
        scale: Question-count multiplier of the study (1.0: the full 85,823).
        permutations: Permutations (and bootstrap resamples) of every test.
        n_bases, variants_per_base, seed, shard_size: Shape of the study (:func:`build_study`).
        work_dir: Where the study and outputs go; default a temporary directory.
        keep: Keep what was written (always kept when ``work_dir`` is given, which then also
            lets a later run reuse a study of the same shape).
        pandas_variants: Run the pandas baseline on this many variants only (spread over the
            bases) and extrapolate its time linearly to all; ``None``: all variants.
        profile: Time each analysis step alone afterwards; ``None``: only when a target fails.
        max_rss_bytes: Kill a step whose RSS passes this (default :func:`default_rss_cap`); it
            is then reported as failed.
        log: Optional ``callable(str)`` for progress.

    Returns:
        The JSON-ready result dict (``setup``, ``rounds``, ``best``, ``ratios``, ``targets``,
        ``check``, ``profile``, ``passed``).
    """
    say = log or (lambda _m: None)
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    temporary = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="rb-bench-analysis-")) if temporary else Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        params = _study_params(n_bases, variants_per_base, scale, seed, shard_size)
        results, stamp = _reuse_or_build(work, params, say)
        manifest = json.loads((results / "manifest.json").read_text())
        all_variants = sorted(n for n, m in manifest["models"].items() if m.get("quantization_card"))
        chosen = None if pandas_variants is None else _spread(all_variants, pandas_variants)
        steps = {
            "analyze": {"results": str(results), "out": str(work / "out-analyze"), "permutations": permutations},
            "flips": {"results": str(results), "out": str(work / "out-flips")},
            "pandas": {"results": str(results), "out": str(work / "out-pandas"), "variants": chosen},
        }
        load_before = _load_average()
        per_round: list[dict[str, Any]] = []
        for rnd in range(rounds):
            order = list(steps) if rnd % 2 == 0 else list(steps)[::-1]
            this: dict[str, Any] = {}
            for name in order:
                say(f"round {rnd + 1}/{rounds}: {name}")
                this[name] = run_child(name, steps[name], work, max_rss_bytes=max_rss_bytes)
                done = this[name]
                shown = f"FAILED ({done['reason']})" if done.get("failed") else f"{done['seconds']:.2f} s"
                say(f"  {name}: {shown}, peak RSS {done['peak_rss_bytes'] / 2**30:.2f} GiB")
            per_round.append(this)
        ok = {name: not per_round[-1][name].get("failed") for name in steps}
        check = (compare_flip_tables(work / "out-flips", work / "out-pandas") if ok["flips"] and ok["pandas"]
                 else {"passed": False, "skipped": "a step failed", "counts_equal": False, "max_abs_diff": None,
                       "rows_compared": 0, "variants_compared": 0, "uncertainty_rows_compared": 0, "tol": CHECK_TOL})
        analyzed_flips = (_check_analyze_flips(work / "out-analyze", work / "out-flips") if ok["analyze"] and ok["flips"]
                          else {"equal": False, "skipped": "a step failed"})
        result = _summarize(per_round, stamp, check, analyzed_flips, len(all_variants), chosen, permutations, rounds,
                            scale, load_before, work if not temporary or keep else None)
        wanted = profile if profile is not None else not result["passed"]
        if wanted:
            say("profiling each analysis step alone")
            result["profile"] = run_child("profile", {"results": str(results), "permutations": permutations}, work,
                                          max_rss_bytes=max_rss_bytes)
        return result
    finally:
        if temporary and not keep:
            shutil.rmtree(work, ignore_errors=True)


def _check_analyze_flips(analyze_out: Path, flips_out: Path) -> dict[str, Any]:
    """The flips table ``analyze`` wrote must equal the one the ``flips`` step computed."""
    import polars as pl

    b = pl.read_parquet(flips_out / "flips.parquet")
    # analyze adds the variants' quantization metadata (method, scheme, bits) to the same rows.
    a = pl.read_parquet(analyze_out / "flips.parquet").select(b.columns)
    if a.shape != b.shape:
        return {"equal": False, "rows": a.height, "max_abs_diff": None}
    worst = 0.0
    for col, dtype in a.schema.items():
        if dtype.is_float():
            d = (a[col] - b[col]).abs().max()
            worst = max(worst, float(d) if d is not None else 0.0)  # group sums may add in another order
        elif not a[col].equals(b[col], check_names=True, null_equal=True):
            return {"equal": False, "rows": a.height, "max_abs_diff": None, "column": col}
    return {"equal": worst <= 1e-12, "rows": a.height, "max_abs_diff": worst}


def _best(per_round: list[dict[str, Any]], name: str) -> float | None:
    """Best seconds over the rounds the step finished (``None`` when it never did)."""
    done = [r[name]["seconds"] for r in per_round if not r[name].get("failed")]
    return min(done) if done else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _summarize(per_round: list[dict[str, Any]], stamp: dict, check: dict, analyzed_flips: dict, n_variants: int,
               chosen: list[str] | None, permutations: int, rounds: int, scale: float, load_before: float | None,
               kept: Path | None) -> dict[str, Any]:
    import pandas as pd
    import polars as pl

    best = {name: _best(per_round, name) for name in APPROACHES}
    pandas_measured = best["pandas"]
    factor = n_variants / len(chosen) if chosen else 1.0
    best["pandas_all_variants"] = pandas_measured * factor if pandas_measured is not None else None
    peak = {name: max(r[name]["peak_rss_bytes"] for r in per_round) for name in APPROACHES}
    failed = {name: [r[name]["reason"] for r in per_round if r[name].get("failed")] for name in APPROACHES}
    ratios = {
        "pandas_over_flips": _ratio(best["pandas_all_variants"], best["flips"]),
        "pandas_over_analyze": _ratio(best["pandas_all_variants"], best["analyze"]),
        "analyze_over_target": _ratio(best["analyze"], TARGETS["analyze_s"]),
        "flips_over_target": _ratio(best["flips"], TARGETS["flips_s"]),
        "peak_rss_over_target": _ratio(peak["analyze"], TARGETS["peak_rss_bytes"]),
    }

    def target(value: float | None, limit: float, below: bool = True) -> dict[str, Any]:
        passed = value is not None and (value < limit if below else value >= limit)
        return {"value": value, "target": limit, "passed": bool(passed)}

    targets = {
        "flips_s": target(best["flips"], TARGETS["flips_s"]),
        "analyze_s": target(best["analyze"], TARGETS["analyze_s"]),
        "peak_rss_bytes": target(peak["analyze"] if not failed["analyze"] else None, TARGETS["peak_rss_bytes"]),
        "speedup_vs_pandas": target(ratios["pandas_over_flips"], TARGETS["speedup_vs_pandas"], below=False),
    }
    setup = {
        "study": stamp.get("shape", {}), "build_seconds": stamp.get("build_seconds"), "scale": scale,
        "rounds": rounds, "permutations": permutations, "bootstrap": permutations, "cpu_count": os.cpu_count(),
        "load_average_before": load_before, "load_average_after": _load_average(),
        "polars": pl.__version__, "pandas": pd.__version__, "python": sys.version.split()[0],
        "pandas_variants": len(chosen) if chosen else n_variants, "all_variants": n_variants,
        "pandas_subsample": chosen, "pandas_extrapolation_factor": factor,
        "work_dir": str(kept) if kept else None,
    }
    passed = all(t["passed"] for t in targets.values()) and check["passed"] and analyzed_flips["equal"]
    return {"setup": setup, "rounds": per_round, "best": best, "best_measured_pandas": pandas_measured,
            "peak_rss_bytes": peak, "failed": {k: v for k, v in failed.items() if v}, "ratios": ratios, "targets": targets, "check": check,
            "analyze_flips_equal_flips_step": analyzed_flips, "profile": None, "passed": passed}


if __name__ == "__main__":
    _child_main(sys.argv[1:])
