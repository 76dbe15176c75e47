"""The timed approaches of the analysis benchmark, each run in its own subprocess.

``analyze`` (:func:`run_analyze`), ``flips`` (:func:`run_flips`), the reference-style pandas
baseline (:func:`run_pandas`, checked with :func:`compare_flip_tables`) and the per-step
profile (:func:`run_profile`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

#: Largest |ours - pandas| accepted on any number of the flip and uncertainty tables.
CHECK_TOL = 1e-9


def _model_table(run: Any) -> Any:
    """Pairing as ``analyze_run`` does it (cards), from a scanned run."""
    from ray_bench.report.analyze import pair_models

    return pair_models(run)[0]


def run_analyze(results: Path, out: Path, permutations: int) -> dict[str, Any]:
    """(a) The whole ``analyze_run``: every table and test, tables written to ``out``."""
    from ray_bench.config import AnalyzeConfig
    from ray_bench.report.analyze import analyze_run

    config = AnalyzeConfig(results=results, out=out, permutations=permutations, bootstrap=permutations)
    started = time.perf_counter()
    output = analyze_run(config)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "tables": {name: frame.height for name, frame in output.tables.items()},
            "warnings": len(output.warnings)}


def run_flips(results: Path, out: Path | None = None) -> dict[str, Any]:
    """(a') Only what the flip and entropy tables need, as ``analyze`` computes them."""
    import polars as pl

    from ray_bench.analysis.entropy import entropy_box, entropy_diff_hist, entropy_hist
    from ray_bench.analysis.fields import closed_fields
    from ray_bench.analysis.flips import flip_table, pair_rows, uncertainty_table
    from ray_bench.results import scan_run

    stages: dict[str, float] = {}
    started = last = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        stages[name] = now - last
        last = now

    run = scan_run(results)
    models = _model_table(run)
    paired = pair_rows(closed_fields(run.rows), models).collect().lazy()
    lap("scan_pair_collect")
    flips = flip_table(paired)
    lap("flip_table")
    uncertainty = uncertainty_table(paired)
    lap("uncertainty_table")
    hist, box, diff = entropy_hist(paired), entropy_box(paired), entropy_diff_hist(paired)
    lap("entropy_tables")
    seconds = time.perf_counter() - started
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        flips.write_parquet(out / "flips.parquet")
        uncertainty.write_parquet(out / "uncertainty.parquet")
    return {"seconds": seconds, "stages": stages, "rows": paired.select(pl.len()).collect().item(),
            "tables": {"flips": flips.height, "uncertainty": uncertainty.height, "entropy_hist": hist.height,
                       "entropy_box": box.height, "entropy_diff_hist": diff.height}}


# The reference's per-row helpers (scripts/analysis.py: compute_entropy, categorize_norm_entropy).
def _ref_entropy(probs: Any) -> float:
    p = np.asarray(probs, dtype=float)
    k = len(p)
    p = p[p > 0]
    p = p / p.sum()
    return float(-(p * np.log2(p)).sum() / np.log2(k)) if k > 1 else 0.0


def _ref_bin(h: float) -> str:
    return "low" if h <= 1 / 3 else "medium" if h <= 2 / 3 else "high"


def run_pandas(results: Path, out: Path | None = None, variants: list[str] | None = None) -> dict[str, Any]:
    """(b) The flip and uncertainty tables in the reference's style, with pandas.

    For each quantized model: read its shards and its base's (the base again for every
    variant, as the reference's ``load_pairwise_differences_supp``), re-merge the question
    columns (``resolve_missing_columns``), compute prediction and normalized entropy row by
    row with ``apply``, inner-merge the pair on the question id, then ``groupby``.
    Closed datasets only (the flip table's closed rows); BBQ ambiguous contexts only.
    """
    import pandas as pd

    from ray_bench.results.reading import read_manifest, shard_files

    started = time.perf_counter()
    manifest = read_manifest(results)
    data_dir = Path(manifest["runs"][-1]["config"]["data_dir"])
    by_model: dict[str, list[Path]] = {}
    for path in shard_files(results, manifest):
        by_model.setdefault(path.parent.parent.name, []).append(path)
    pairs = {name: m["quantization_card"]["base_model"]["name"]
             for name, m in manifest["models"].items() if m.get("quantization_card")}
    chosen = sorted(pairs) if variants is None else variants
    questions = {}
    for path in sorted(data_dir.glob("*.parquet")):
        q = pd.read_parquet(path, columns=["question_id", "subset", "context_condition", "kind"])
        if (q["kind"] == "closed").all():
            questions[path.stem] = q.drop(columns="kind")

    def load(model: str) -> pd.DataFrame:
        frames = []
        for path in by_model[model]:
            subset = path.parent.name
            if subset not in questions:
                continue  # open-ended: no choice probabilities
            df = pd.read_parquet(path, columns=["question_id", "model", "dataset", "subset", "axis", "choice_probs",
                                                "error"])
            df = df[df["error"].isna()].merge(questions[subset], on=["subset", "question_id"], how="left")
            if subset == "BBQ":
                df = df[df["context_condition"] == "ambig"]
            df["res_prob_chosen_idx"] = df["choice_probs"].apply(lambda p: int(np.argmax(p)))
            df["normalized_entropy"] = df["choice_probs"].apply(_ref_entropy)
            frames.append(df)
        return pd.concat(frames, ignore_index=True)

    flip_parts, bin_parts = [], []
    for variant in chosen:
        base_df, var_df = load(pairs[variant]), load(variant)
        m = base_df.merge(var_df, on=["subset", "question_id"], suffixes=("_base", "_modified"), how="inner")
        m["Flipped"] = m["res_prob_chosen_idx_base"] != m["res_prob_chosen_idx_modified"]
        m["norm_entropy_diff"] = m["normalized_entropy_modified"] - m["normalized_entropy_base"]
        m["normalized_entropy_category"] = m["normalized_entropy_base"].apply(_ref_bin)
        m["axis"] = m["axis_base"]
        aggs = {"n": ("Flipped", "size"), "n_flipped": ("Flipped", "sum"),
                "mean_entropy_base": ("normalized_entropy_base", "mean"),
                "mean_entropy_variant": ("normalized_entropy_modified", "mean"),
                "mean_entropy_diff": ("norm_entropy_diff", "mean")}
        per_axis = m.groupby(["subset", "axis"]).agg(**aggs).reset_index()
        per_set = m.groupby(["subset"]).agg(**aggs).reset_index().assign(axis="(all)")
        flip_parts.append(pd.concat([per_axis, per_set]).assign(variant=variant, base=pairs[variant]))
        bin_parts.append(m.groupby(["subset", "normalized_entropy_category"]).agg(
            n_rows=("Flipped", "size"), n_flipped=("Flipped", "sum")).reset_index())
    flips = pd.concat(flip_parts, ignore_index=True)
    flips["flip_rate"] = flips["n_flipped"] / flips["n"]
    bins = pd.concat(bin_parts).groupby(["subset", "normalized_entropy_category"]).sum().reset_index()
    bins["pct_flipped"] = 100 * bins["n_flipped"] / bins["n_rows"]
    bins["pct_questions"] = 100 * bins["n_rows"] / bins.groupby("subset")["n_rows"].transform("sum")
    bins = bins.rename(columns={"normalized_entropy_category": "entropy_bin"})
    seconds = time.perf_counter() - started
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        flips.to_parquet(out / "flips.parquet", index=False)
        bins.to_parquet(out / "uncertainty.parquet", index=False)
    return {"seconds": seconds, "variants": len(chosen), "all_variants": len(pairs), "rows": int(flips.loc[
        flips["axis"] == "(all)", "n"].sum())}


def compare_flip_tables(ours_dir: Path, pandas_dir: Path) -> dict[str, Any]:
    """Max |ours - pandas| over the flip and uncertainty numbers both compute; counts must match exactly."""
    import polars as pl

    keys = ["variant", "subset", "axis"]
    nums = ["flip_rate", "mean_entropy_base", "mean_entropy_variant", "mean_entropy_diff"]
    ref = pl.read_parquet(pandas_dir / "flips.parquet")
    ours = pl.read_parquet(ours_dir / "flips.parquet").filter(
        pl.col("variant").is_in(ref["variant"].unique().to_list()), pl.col("subset").is_in(ref["subset"].unique().to_list())
    )
    joined = ours.join(ref, on=keys, how="full", suffix="_pd", coalesce=True)
    missing = joined.filter(pl.col("n").is_null() | pl.col("n_pd").is_null()).height
    counts_equal = missing == 0 and bool((joined["n"] == joined["n_pd"]).all()) and bool(
        (joined["n_flipped"] == joined["n_flipped_pd"]).all())
    diffs = {c: float(joined.select((pl.col(c) - pl.col(f"{c}_pd")).abs().max()).item() or 0.0) for c in nums}
    # The uncertainty table pools every variant: comparable only when pandas ran on all of them.
    ours_all_variants = pl.read_parquet(ours_dir / "flips.parquet").filter(
        pl.col("role") == "variant")["variant"].n_unique()
    unc_rows = unc_missing = 0
    if ref["variant"].n_unique() == ours_all_variants:
        unc_ref = pl.read_parquet(pandas_dir / "uncertainty.parquet")
        unc = pl.read_parquet(ours_dir / "uncertainty.parquet").join(unc_ref, on=["subset", "entropy_bin"], how="full",
                                                                     suffix="_pd", coalesce=True)
        unc_rows = unc.height
        unc_missing = unc.filter(pl.col("n_rows").is_null() | pl.col("n_rows_pd").is_null()).height
        counts_equal &= unc_missing == 0 and bool((unc["n_rows"] == unc["n_rows_pd"]).all())
        for c in ("pct_flipped", "pct_questions"):
            diffs[f"uncertainty.{c}"] = float(unc.select((pl.col(c) - pl.col(f"{c}_pd")).abs().max()).item() or 0.0)
    worst = max(diffs.values())
    return {"rows_compared": joined.height, "variants_compared": ref["variant"].n_unique(),
            "all_variants": ours_all_variants, "uncertainty_rows_compared": unc_rows, "missing_rows": missing + unc_missing,
            "counts_equal": counts_equal, "max_abs_diff": worst, "max_abs_diff_by_column": diffs, "tol": CHECK_TOL,
            "passed": bool(counts_equal and worst <= CHECK_TOL)}


def run_profile(results: Path, permutations: int) -> dict[str, float]:
    """Seconds of each step of ``analyze_frames`` timed alone, in one process (tables not written)."""
    import polars as pl

    from ray_bench.analysis import study
    from ray_bench.analysis.entropy import entropy_box, entropy_diff_hist, entropy_hist
    from ray_bench.analysis.fields import check_unique, closed_fields
    from ray_bench.analysis.flips import flip_table, pair_rows, question_flip_table, uncertainty_table
    from ray_bench.analysis.groups import group_asymmetry, ranking_table
    from ray_bench.analysis.metrics import TestOptions, significance_table
    from ray_bench.results import scan_run

    tests = TestOptions(n_permutations=permutations, n_bootstrap=permutations)
    out: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        value = fn()
        out[name] = time.perf_counter() - started
        return value

    run = timed("scan_run", lambda: scan_run(results))
    models = timed("pairing (model table)", lambda: _model_table(run))
    timed("check_unique", lambda: check_unique(run.rows))
    paired = timed("closed_fields + pair_rows (collect)",
                   lambda: pair_rows(closed_fields(run.rows), models).collect().lazy())
    paired_open = timed("open_fields + pair_rows (open)", lambda: study._open_rows(run.rows, models))
    for name, fn in (
        ("flip_table", lambda: flip_table(paired)), ("uncertainty_table", lambda: uncertainty_table(paired)),
        ("question_flip_table", lambda: question_flip_table(paired)),
        ("significance_table", lambda: significance_table(paired, tests)),
        ("group_asymmetry", lambda: group_asymmetry(paired)), ("ranking_table", lambda: ranking_table(paired, tests)),
        ("entropy_hist", lambda: entropy_hist(paired)), ("entropy_box", lambda: entropy_box(paired)),
        ("entropy_diff_hist", lambda: entropy_diff_hist(paired)),
    ):
        timed(name, fn)
    if paired_open is not None:
        timed("text_change_table", lambda: study.text_change_table(paired_open))
        n_open = paired_open.select(pl.len()).collect().item()
        distinct = paired_open.select("response_base", "response_variant").unique().select(pl.len()).collect().item()
        changed = paired_open.filter(pl.col("response_base") != pl.col("response_variant")).select(
            "response_base", "response_variant").unique().select(pl.len()).collect().item()
        out["open_pairs"], out["open_distinct_pairs"], out["open_rouge_calls"] = n_open, distinct, changed
    rows = timed("rows table (collect)", lambda: paired.collect())
    with tempfile.TemporaryDirectory(prefix="rb-bench-prof-") as tmp:
        timed("write rows.parquet", lambda: rows.write_parquet(Path(tmp) / "rows.parquet"))
    return out
