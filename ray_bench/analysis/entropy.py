"""Distributions of normalized entropy behind figures 2a-2c (notes 4.9), as small tables.

The report plots these; computing them here keeps the report free of per-row data.
"""

from __future__ import annotations

import polars as pl

from ray_bench.analysis.keys import DATASET_KEYS, QUESTION_KEYS


def _histogram(frame: pl.LazyFrame, value: str, by: list[str], lo: float, hi: float, bins: int) -> pl.DataFrame:
    """Counts and densities of ``value`` in ``bins`` equal bins on [lo, hi] per ``by`` (edges included)."""
    width = (hi - lo) / bins
    index = ((pl.col(value) - lo) / width).floor().clip(0, bins - 1).cast(pl.Int32)
    counts = (
        frame.filter(pl.col(value).is_not_null())
        .group_by([*by, index.alias("bin")]).len().rename({"len": "count"})
        .with_columns((pl.col("count") / (pl.col("count").sum().over(by) * width)).alias("density"))
        .collect()
    )
    return counts.with_columns(
        (lo + pl.col("bin") * width).alias("bin_lo"), (lo + (pl.col("bin") + 1) * width).alias("bin_hi")
    ).sort([*by, "bin"], nulls_last=True).select(*by, "bin_lo", "bin_hi", "count", "density")


def entropy_hist(rows: pl.LazyFrame, bins: int = 20) -> pl.DataFrame:
    """Base normalized entropy of flipped vs unflipped question x variant rows (fig 2a)."""
    closed = rows.filter((pl.col("kind") == "closed") & (pl.col("role") == "variant"))
    return _histogram(closed, "entropy_base", [*DATASET_KEYS, "flipped"], 0.0, 1.0, bins)


def entropy_diff_hist(rows: pl.LazyFrame, bins: int = 50) -> pl.DataFrame:
    """Change of normalized entropy (variant - base) per quantization label (fig 2c)."""
    closed = rows.filter((pl.col("kind") == "closed") & (pl.col("role") == "variant"))
    return _histogram(closed, "entropy_diff", [*DATASET_KEYS, "q_label"], -1.0, 1.0, bins)


def entropy_box(rows: pl.LazyFrame) -> pl.DataFrame:
    """Quantiles of normalized entropy: bases (each question once per base) vs each q_label (fig 2b)."""
    closed = rows.filter((pl.col("kind") == "closed") & (pl.col("role") == "variant"))
    base = closed.unique(["base", *QUESTION_KEYS]).select(*DATASET_KEYS, pl.lit("base").alias("who"),
                                                           pl.col("entropy_base").alias("h"))
    variants = closed.select(*DATASET_KEYS, pl.col("q_label").alias("who"), pl.col("entropy_variant").alias("h"))
    h = pl.col("h")
    return (
        pl.concat([base, variants]).group_by([*DATASET_KEYS, "who"]).agg(
            pl.len().alias("n"), h.mean().alias("mean"),
            *(h.quantile(q, interpolation="linear").alias(f"q{round(q * 100):02d}") for q in (0.05, 0.25, 0.5, 0.75, 0.95)),
        ).sort([*DATASET_KEYS, "who"], nulls_last=True).collect()
    )
