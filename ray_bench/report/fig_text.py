"""Supplementary figure: how much the generated text of open-ended datasets changes.

Uses the optional ``text_changes`` table (open datasets with generations).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ray_bench.report.style import (
    ALL_AXES,
    DATASET_KEYS,
    color,
    dataset_label,
    order_q_labels,
    legend_outside,
    panels,
    require_rows,
    style_axes,
    styled,
)

if TYPE_CHECKING:
    import polars as pl
    from matplotlib.figure import Figure

#: (column, axis label) of the panels.
TEXT_PANELS = (
    ("mean_rougeL_f", "ROUGE-L F1, variant vs base text"),
    ("mean_lcp_prop", "shared prefix (share of words)"),
    ("mean_word_count_change", "Δ word count (variant − base)"),
)


def text_change_means(text_changes: pl.DataFrame) -> pl.DataFrame:
    """Per (dataset, q_label): the text measures averaged over variants, weighted by ``n``.

    Uses each dataset's ``axis = "(all)"`` rows where it has them, else its per-axis rows.
    """
    import polars as pl

    rows = text_changes.filter((pl.col("role") != "control") & (pl.col("n") > 0))
    has_all = rows.group_by(DATASET_KEYS).agg((pl.col("axis") == ALL_AXES).any().alias("_all"))
    rows = rows.join(has_all, on=DATASET_KEYS, how="left", nulls_equal=True).filter(
        (pl.col("axis") == ALL_AXES) == pl.col("_all"))
    w = pl.col("n")
    return (
        rows.with_columns(dataset_label()).group_by("label", "q_label")
        .agg(pl.col("variant").n_unique().alias("n_variants"), w.sum().alias("n"),
             *((pl.col(c) * w).sum() / w.sum() for c, _ in TEXT_PANELS))
        .sort("label", "q_label")
    )


@styled
def figS_text_changes(text_changes: pl.DataFrame) -> tuple[Figure, pl.DataFrame]:
    """Supplement: ROUGE-L, shared prefix and word-count change of the variants' generations."""
    data = require_rows(text_change_means(text_changes), "text-change rows")
    labels = sorted(set(data["label"].to_list()))
    order = order_q_labels(data["q_label"].to_list())
    fig, axes = panels(len(TEXT_PANELS), ncols=3, size=(3.9, 0.5 * len(labels) + 2.0))
    width = 0.8 / len(order)
    for ax, (col, name) in zip(axes, TEXT_PANELS, strict=True):
        for k, q in enumerate(order):
            sub = {r["label"]: r[col] for r in data.iter_rows(named=True) if r["q_label"] == q}
            ys = [i - 0.4 + (k + 0.5) * width for i, lab in enumerate(labels) if lab in sub]
            ax.barh(ys, [sub[lab] for lab in labels if lab in sub], height=width * 0.95, color=color(k), label=q)
        ax.set_yticks(range(len(labels)), labels)
        ax.invert_yaxis()
        ax.set_xlabel(name)
        ax.axvline(0, color="#555555", linewidth=0.6)
        style_axes(ax, grid_axis="x")
    legend_outside(fig, axes[0])
    fig.suptitle("Change of the generated text under quantization (supplement)")
    return fig, data
