"""Figures 3a-3c, 4a, 4b: significant changes of aggregate bias metrics, and what they hide.

A *test* is one row of the ``significance`` table: (base, variant, social axis, metric) on a
dataset. Only tests with ``status == "tested"`` of quantized variants count (controls are left
out); the per-dataset ``axis = "(all)"`` rows are used only where a dataset has no per-axis
rows, so that each dataset's groups are the paper's (base, variant, axis) groups.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ray_bench.report.style import (
    ALL_AXES,
    DATASET_KEYS,
    HEATMAP_CMAP,
    annotate_heatmap,
    color,
    dataset_label,
    order_q_labels,
    require_rows,
    legend_outside,
    style_axes,
    styled,
)

if TYPE_CHECKING:
    import polars as pl
    from matplotlib.figure import Figure

MORE_BIASED = "more biased"


def counted_tests(significance: pl.DataFrame) -> pl.DataFrame:
    """The tests the figures count (see the module docstring), with a dataset ``label``."""
    import polars as pl

    rows = significance.filter((pl.col("role") != "control") & (pl.col("status") == "tested"))
    has_axes = rows.group_by(DATASET_KEYS).agg((pl.col("axis") != ALL_AXES).any().alias("_has_axes"))
    rows = rows.join(has_axes, on=DATASET_KEYS, how="left", nulls_equal=True)
    return rows.filter((pl.col("axis") != ALL_AXES) | ~pl.col("_has_axes")).drop("_has_axes").with_columns(
        dataset_label(), pl.col("significant_pooled").fill_null(False)
    )


def significant_share(tests: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """Per ``by``: tests, significant tests and the significant "more biased" ones, in %."""
    import polars as pl

    sig = pl.col("significant_pooled")
    return (
        tests.group_by(by).agg(
            pl.len().alias("n_tests"), sig.sum().alias("n_significant"),
            (sig & (pl.col("direction") == MORE_BIASED)).sum().alias("n_more_biased"),
        )
        .with_columns((100 * pl.col("n_significant") / pl.col("n_tests")).alias("pct_significant"),
                      (100 * pl.col("n_more_biased") / pl.col("n_tests")).alias("pct_more_biased"))
        .sort(by)
    )


def _hbar_labels(ax, labels: list[str]) -> None:
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()


@styled
def fig3a_significant_share(significance: pl.DataFrame) -> tuple[Figure, pl.DataFrame]:
    """Fig 3a: % of tests with a significant change (pooled BH-FDR), "more biased" share overlaid."""
    from matplotlib.figure import Figure

    data = require_rows(significant_share(counted_tests(significance), ["label"]), "tested significance rows")
    labels = data["label"].to_list()
    fig = Figure(figsize=(7.5, 0.45 * len(labels) + 1.6), layout="constrained")
    ax = fig.add_subplot()
    y = range(len(labels))
    ax.barh(y, data["pct_significant"], height=0.7, color=color(4), label="significant change")
    ax.barh(y, data["pct_more_biased"], height=0.35, color=color(3), label="… of which more biased")
    for i, row in enumerate(data.iter_rows(named=True)):
        ax.text(row["pct_significant"] + 0.5, i, f"{row['n_significant']}/{row['n_tests']}", va="center",
                fontsize=7, color="#333333")
    _hbar_labels(ax, labels)
    ax.set_xlim(0, max(10.0, float(data["pct_significant"].max()) * 1.2))
    ax.set_xlabel("% of tests (base × variant × axis × metric) significant")
    ax.set_title("Share of significant changes in aggregate bias metrics (fig 3a)")
    style_axes(ax, grid_axis="x")
    legend_outside(fig, ax)
    return fig, data


def effect_size_summary(values: pl.DataFrame) -> pl.DataFrame:
    """mean/std/min/max of ``cohens_dz`` per dataset ``label`` plus an "All" row."""
    import polars as pl

    d = pl.col("cohens_dz")
    aggs = [pl.len().alias("n"), d.mean().alias("mean"), d.std().alias("std"), d.min().alias("min"),
            d.max().alias("max")]
    per = values.group_by("label").agg(aggs).sort("label")
    return pl.concat([per, values.select(pl.lit("All").alias("label"), *aggs)])


@styled
def fig3b_effect_size(significance: pl.DataFrame) -> tuple[Figure, pl.DataFrame]:
    """Fig 3b: distribution of Cohen's d_z among significant tests, and its summary table."""
    import numpy as np
    import polars as pl
    from matplotlib.figure import Figure

    keys = ["label", "base", "variant", "q_label", "axis", "metric"]
    data = require_rows(
        counted_tests(significance).filter(pl.col("significant_pooled") & pl.col("cohens_dz").is_finite())
        .select(*keys, "direction", "cohens_dz").sort(keys), "significant test with a finite Cohen's d_z")
    summary = effect_size_summary(data)
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax, tab = fig.subplots(1, 2, width_ratios=[1.3, 1])
    dz = data["cohens_dz"].to_numpy()
    bins = np.histogram_bin_edges(dz, bins=min(30, max(5, len(dz) // 2)))
    ax.hist(dz, bins=bins, color=color(0), edgecolor="white", linewidth=0.5)
    ax.axvline(0, color="#555555", linestyle=":", linewidth=0.8)
    ax.set_xlabel("Cohen's d_z (variant − base)")
    ax.set_ylabel("significant tests")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title("Effect size of significant changes (fig 3b)")
    style_axes(ax)
    cells = [[r["label"], str(r["n"])] + [_num(r[c]) for c in ("mean", "std", "min", "max")]
             for r in summary.iter_rows(named=True)]
    tab.axis("off")
    head = ["dataset", "n", "mean", "std", "min", "max"]
    chars = [max(len(str(r[i])) for r in [head, *cells]) + 2 for i in range(len(head))]
    table = tab.table(cellText=cells, colLabels=head, loc="center", cellLoc="right", colLoc="right",
                      colWidths=[0.98 * c / sum(chars) for c in chars])
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    for (row, _col), cell in table.get_celld().items():
        cell.PAD = 0.25
        cell.set_edgecolor("#bbbbbb")
        if row == 0:
            cell.set_facecolor("#f0f0f0")
    table.scale(1.0, 1.6)
    return fig, data


def _num(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def weighted_flip_rate(tests: pl.DataFrame) -> pl.DataFrame:
    """Response flip rate (% of questions, weighted by each test's ``n``) per dataset and significance."""
    import polars as pl

    rows = tests.filter(pl.col("flip_rate").is_not_null() & (pl.col("n") > 0))
    return (
        rows.group_by("label", "significant_pooled").agg(
            pl.len().alias("n_tests"), pl.col("n").sum().alias("n_questions"),
            (100 * (pl.col("flip_rate") * pl.col("n")).sum() / pl.col("n").sum()).alias("pct_flipped"),
        ).sort("label", "significant_pooled")
    )


@styled
def fig3c_flip_by_significance(significance: pl.DataFrame) -> tuple[Figure, pl.DataFrame]:
    """Fig 3c: responses flip as often where the aggregate metric did not change significantly."""
    from matplotlib.figure import Figure

    data = require_rows(weighted_flip_rate(counted_tests(significance)), "tested significance rows with a flip rate")
    labels = sorted(set(data["label"].to_list()))
    fig = Figure(figsize=(7.5, 0.55 * len(labels) + 1.6), layout="constrained")
    ax = fig.add_subplot()
    for k, (sig, name) in enumerate(((False, "not significant"), (True, "significant"))):
        sub = {r["label"]: r["pct_flipped"] for r in data.iter_rows(named=True) if r["significant_pooled"] == sig}
        y = [i + (k - 0.5) * 0.38 for i, lab in enumerate(labels) if lab in sub]
        ax.barh(y, [sub[lab] for lab in labels if lab in sub], height=0.36, color=color(0 if sig else 4),
                label=name)
    _hbar_labels(ax, labels)
    ax.set_xlabel("% responses flipped (weighted by questions per test)")
    ax.set_title("Aggregate metrics hide response flips (fig 3c)")
    style_axes(ax, grid_axis="x")
    legend_outside(fig, ax)
    return fig, data


def _heatmap(data: pl.DataFrame, row_col: str, rows: list[str], title: str) -> Figure:
    """Rows x datasets (+ "Avg") heatmap of ``pct_significant``."""
    import numpy as np
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    cols = sorted(c for c in set(data["label"].to_list()) if c != "Avg") + ["Avg"]
    cell = {(r[row_col], r["label"]): r["pct_significant"] for r in data.iter_rows(named=True)}
    values = [[cell.get((r, c), math.nan) for c in cols] for r in rows]
    vmax = max(10.0, math.ceil(np.nanmax(np.array(values, dtype=float)) / 10) * 10)
    norm = Normalize(0, vmax)
    fig = Figure(figsize=(1.0 * len(cols) + 3.2, 0.45 * len(rows) + 2.2), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(np.array(values, dtype=float)), cmap=HEATMAP_CMAP, norm=norm,
                      aspect="auto")
    annotate_heatmap(ax, values, "{:.0f}%", norm)
    ax.axvline(len(cols) - 1.5, color="white", linewidth=3)
    ax.set_xticks(range(len(cols)), cols, rotation=35, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="% of tests significant", shrink=0.9)
    return fig


def share_with_avg(tests: pl.DataFrame, row_col: str) -> pl.DataFrame:
    """% significant per (``row_col``, dataset) plus an ``Avg`` column: the mean over datasets."""
    import polars as pl

    per = significant_share(tests, [row_col, "label"])
    avg = per.group_by(row_col).agg(pl.lit("Avg").alias("label"), pl.col("n_tests").sum(),
                                    pl.col("n_significant").sum(), pl.col("n_more_biased").sum(),
                                    pl.col("pct_significant").mean(), pl.col("pct_more_biased").mean())
    return pl.concat([per, avg.select(per.columns)]).sort(row_col, "label")


@styled
def fig4a_significant_by_method(significance: pl.DataFrame) -> tuple[Figure, pl.DataFrame]:
    """Fig 4a: % significant tests by quantization label x dataset (+ Avg over datasets)."""
    data = require_rows(share_with_avg(counted_tests(significance), "q_label"), "tested significance rows")
    rows = order_q_labels(data["q_label"].to_list())
    return _heatmap(data, "q_label", rows, "Behavior flipping by quantization method (fig 4a)"), data


@styled
def fig4b_significant_by_base(significance: pl.DataFrame) -> tuple[Figure, pl.DataFrame]:
    """Fig 4b: % significant tests by base model x dataset (+ Avg over datasets)."""
    data = require_rows(share_with_avg(counted_tests(significance), "base"), "tested significance rows")
    rows = sorted(set(data["base"].to_list()))
    return _heatmap(data, "base", rows, "Behavior flipping by base model (fig 4b)"), data
