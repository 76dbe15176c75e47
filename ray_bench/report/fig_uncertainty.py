"""Figure 2: uncertain answers flip; how quantization moves the base model's uncertainty.

Each function takes the analysis table(s) named by its arguments and returns the figure and
the small frame it plots (written beside it as CSV). Empty input raises
:class:`~ray_bench.report.style.NoFigureData`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ray_bench.report.style import (
    BASE_COLOR,
    color,
    dataset_label,
    grid_edges,
    labels_in_order,
    on_grid,
    order_q_labels,
    panels,
    require_rows,
    style_axes,
    styled,
)

if TYPE_CHECKING:
    import polars as pl
    from matplotlib.figure import Figure

#: x range of figure 2c, as in the paper.
DIFF_RANGE = (-0.3, 0.3)


def pooled_hist(hist: pl.DataFrame, series: str) -> pl.DataFrame:
    """Histogram rows pooled over the subsets of each dataset (counts summed, density redone).

    Columns: ``label``, ``series``, ``bin_lo``, ``bin_hi``, ``count``, ``density``.
    """
    import polars as pl

    by = ["label", series]
    return (
        hist.filter(pl.col("count").is_not_null())
        .with_columns(dataset_label())
        .group_by([*by, "bin_lo", "bin_hi"]).agg(pl.col("count").sum())
        .with_columns((pl.col("count") / (pl.col("count").sum().over(by) * (pl.col("bin_hi") - pl.col("bin_lo"))))
                      .alias("density"))
        .sort([*by, "bin_lo"])
        .select(*by, "bin_lo", "bin_hi", "count", "density")
    )


def _step_panels(data: pl.DataFrame, series: str, order: list, names: dict, colors: dict,
                 xlabel: str, legend_loc: str = "upper right") -> Figure:
    """Small multiples of density step lines, one line per value of ``series``."""
    labels = labels_in_order(data)
    fig, axes = panels(len(labels))
    edges = grid_edges(data)
    for ax, label in zip(axes, labels, strict=True):
        panel = data.filter(data["label"] == label)
        for key in order:
            sub = panel.filter(panel[series] == key)
            if sub.height == 0:
                continue
            n = int(sub["count"].sum())
            ax.stairs(on_grid(sub, edges, "density"), edges, color=colors[key], linewidth=1.6,
                      label=f"{names[key]} (n={n:,})")
        ax.set_title(label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("density")
        style_axes(ax)
        ax.legend(frameon=False, loc=legend_loc, fontsize=7)
    return fig


@styled
def fig2a_entropy_hist(entropy_hist: pl.DataFrame) -> tuple[Figure, pl.DataFrame]:
    """Fig 2a: the base model's normalized entropy on questions whose response flipped vs not.

    One panel per dataset (subsets pooled, BBQ contexts apart).
    """
    data = require_rows(pooled_hist(entropy_hist, "flipped"), "entropy histogram rows")
    names = {False: "response unchanged", True: "response flipped"}
    fig = _step_panels(data, "flipped", [False, True], names, {False: color(0), True: color(3)},
                       "normalized entropy of the base model")
    fig.suptitle("Flipped responses come from uncertain base answers (fig 2a)")
    return fig, data


@styled
def fig2c_entropy_diff_hist(entropy_diff_hist: pl.DataFrame) -> tuple[Figure, pl.DataFrame]:
    """Fig 2c: change of normalized entropy (variant − base) per quantization label, x in ±0.3."""
    data = require_rows(pooled_hist(entropy_diff_hist, "q_label"), "entropy-change histogram rows")
    order = order_q_labels(data["q_label"].to_list())
    fig = _step_panels(data, "q_label", order, {q: q for q in order},
                       {q: color(i) for i, q in enumerate(order)}, "Δ normalized entropy (variant − base)",
                       legend_loc="upper left")
    for ax in fig.axes:
        if ax.get_visible():
            ax.set_xlim(*DIFF_RANGE)
            ax.axvline(0, color="#555555", linewidth=0.8, linestyle=":")
    fig.suptitle("Change of uncertainty under quantization (fig 2c)")
    return fig, data


def _box_stats(panel: pl.DataFrame, order: list[str]) -> list[dict]:
    """``Axes.bxp`` statistics (whiskers: 5th-95th percentile) in ``order``."""
    stats = []
    for who in order:
        row = panel.filter(panel["who"] == who).row(0, named=True)
        stats.append({"label": who, "med": row["q50"], "q1": row["q25"], "q3": row["q75"],
                      "whislo": row["q05"], "whishi": row["q95"], "mean": row["mean"], "fliers": []})
    return stats


@styled
def fig2b_entropy_box(entropy_box: pl.DataFrame) -> tuple[Figure, pl.DataFrame]:
    """Fig 2b: normalized entropy of the bases vs each quantization label, per dataset subset.

    Quantiles cannot be pooled, so subsets (e.g. CEB-Recognition-S and -T) get their own panel.
    """
    import polars as pl

    data = require_rows(
        entropy_box.filter(pl.col("q50").is_not_null()).with_columns(dataset_label("subset"))
        .select("label", "who", "n", "mean", "q05", "q25", "q50", "q75", "q95").sort("label", "who"),
        "entropy quantile rows",
    )
    labels = labels_in_order(data)
    fig, axes = panels(len(labels), size=(3.8, 3.0))
    for ax, label in zip(axes, labels, strict=True):
        panel = data.filter(pl.col("label") == label)
        whos = panel["who"].to_list()
        order = (["base"] if "base" in whos else []) + order_q_labels(w for w in whos if w != "base")
        art = ax.bxp(_box_stats(panel, order), showfliers=False, showmeans=True, patch_artist=True,
                     widths=0.6, meanprops={"marker": "^", "markerfacecolor": "white",
                                            "markeredgecolor": "black", "markersize": 4},
                     medianprops={"color": "black"})
        for i, (box, who) in enumerate(zip(art["boxes"], order, strict=True)):
            box.set_facecolor(BASE_COLOR if who == "base" else color(i - 1 if "base" in order else i))
            box.set_alpha(0.85)
        ax.set_xticks(range(1, len(order) + 1), ["base" if w == "base" else w for w in order],
                      rotation=30, ha="right")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(label)
        ax.set_ylabel("normalized entropy")
        style_axes(ax)
    fig.suptitle("Uncertainty before and after quantization (fig 2b)")
    return fig, data
