"""Figures 4c and 5a-5c: rankings, and how unevenly flips fall on questions and social groups.

Each function returns the figure and the frame it plots; empty input raises
:class:`~ray_bench.report.style.NoFigureData`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ray_bench.report.style import (
    HEATMAP_CMAP,
    NoFigureData,
    annotate_heatmap,
    color,
    dataset_label,
    labels_in_order,
    legend_outside,
    panels,
    require_rows,
    shorten,
    style_axes,
    styled,
)

if TYPE_CHECKING:
    import polars as pl
    from matplotlib.figure import Figure

LEVEL_TITLES = {"all": "across all variants", "base": "per base model", "variant": "per variant"}


def default_ranking_label(q_labels: list[str]) -> str:
    """``RTN W4A16`` if present, else the first W4A16 label with RTN, else the first W4A16, else the first."""
    labels = sorted(set(q_labels))
    for pick in (lambda q: q == "RTN W4A16", lambda q: "W4A16" in q and "RTN" in q, lambda q: "W4A16" in q):
        hit = [q for q in labels if pick(q)]
        if hit:
            return hit[0]
    return labels[0]


def ranking_selection(rankings: pl.DataFrame, q_label: str | None = None, max_panels: int = 6) -> pl.DataFrame:
    """Rows of one q_label, one metric per dataset, for the ``max_panels`` datasets with most bases."""
    import polars as pl

    rows = rankings.filter((pl.col("rank_base") > 0) & (pl.col("rank_variant") > 0))  # 0 / null: unranked
    require_rows(rows, "ranking rows")
    q_label = q_label or default_ranking_label(rows["q_label"].to_list())
    rows = rows.filter(pl.col("q_label") == q_label).with_columns(dataset_label("subset"))
    first_metric = rows.group_by("label").agg(pl.col("metric").min().alias("_metric"))
    rows = rows.join(first_metric, on="label").filter(pl.col("metric") == pl.col("_metric")).drop("_metric")
    top = (rows.group_by("label").agg(pl.col("base").n_unique().alias("_n")).sort(["_n", "label"],
           descending=[True, False]).head(max_panels))
    keep = ["label", "metric", "q_label", "base", "variant", "value_base", "lo_base", "hi_base", "rank_base",
            "value_variant", "lo_variant", "hi_variant", "rank_variant", "rank_change"]
    return require_rows(rows.filter(pl.col("label").is_in(top["label"].implode())).select(keep)
                        .sort("label", "rank_base", "base"), f"ranking rows for {q_label!r}")


@styled
def fig4c_rankings(rankings: pl.DataFrame, q_label: str | None = None) -> tuple[Figure, pl.DataFrame]:
    """Fig 4c: rank of each base vs its ``q_label`` variant (dense ranks, ties by CI overlap)."""
    import numpy as np
    from matplotlib.colors import Normalize

    data = ranking_selection(rankings, q_label)
    q_label = data["q_label"][0]
    labels = labels_in_order(data)
    n_bases = int(data.group_by("label").len()["len"].max())
    fig, axes = panels(len(labels), ncols=3, size=(3.9, 0.38 * n_bases + 1.5))
    for ax, label in zip(axes, labels, strict=True):
        panel = data.filter(data["label"] == label)
        ranks = [[float(r["rank_base"]), float(r["rank_variant"]), math.nan] for r in panel.iter_rows(named=True)]
        norm = Normalize(1, max(2.0, float(np.nanmax(np.array(ranks)))))
        ax.imshow(np.ma.masked_invalid(np.array(ranks)), cmap=HEATMAP_CMAP + "_r", norm=norm, aspect="auto")
        annotate_heatmap(ax, [row[:2] for row in ranks], "{:.0f}", lambda v: 1 - norm(v))
        for i, change in enumerate(panel["rank_change"].to_list()):
            text = "–" if change is None else f"{int(change):+d}" if change else "0"
            ax.text(2, i, text, ha="center", va="center", fontsize=8,
                    color=color(3) if (change or 0) > 0 else color(0) if (change or 0) < 0 else "#333333")
        ax.set_xticks([0, 1, 2], ["base", shorten(q_label, 14), "change"], rotation=20)
        ax.set_yticks(range(panel.height), [shorten(b, 24) for b in panel["base"].to_list()])
        ax.set_title(f"{label}\n{panel['metric'][0]}", fontsize=9)
        ax.spines[:].set_visible(False)
        ax.tick_params(length=0)
    fig.suptitle(f"Bias ranking of the base models before and after {q_label} (fig 4c; 1 = least biased)")
    return fig, data


def question_flip_hist(question_flips: pl.DataFrame, bins: int = 20) -> pl.DataFrame:
    """% of questions by per-question flip rate (0-100 %), per dataset.

    With few variants the rate takes few values (k / n_variants): one bar per value. Otherwise
    ``bins`` equal bins on [0, 100].
    """
    import polars as pl

    rows = question_flips.filter(pl.col("flip_rate").is_not_null()).with_columns(
        dataset_label(), (100 * pl.col("flip_rate")).round(6).alias("pct"))
    values = sorted(set(rows["pct"].to_list()))
    if len(values) <= bins + 1:
        gap = min((b - a for a, b in zip(values, values[1:])), default=100 / bins)
        half = 0.4 * min(gap, 100 / bins * 2)
        counted = rows.group_by("label", pl.col("pct").alias("center")).len().with_columns(
            (pl.col("center") - half).alias("bin_lo"), (pl.col("center") + half).alias("bin_hi"))
    else:
        width = 100 / bins
        index = (pl.col("pct") / width).floor().clip(0, bins - 1)
        counted = rows.group_by("label", index.alias("_bin")).len().with_columns(
            (pl.col("_bin") * width).alias("bin_lo"), ((pl.col("_bin") + 1) * width).alias("bin_hi"),
            ((pl.col("_bin") + 0.5) * width).alias("center"))
    return (counted.rename({"len": "n_questions"})
            .with_columns((100 * pl.col("n_questions") / pl.col("n_questions").sum().over("label"))
                          .alias("pct_questions"))
            .sort("label", "center").select("label", "center", "bin_lo", "bin_hi", "n_questions", "pct_questions"))


@styled
def fig5a_question_flips(question_flips: pl.DataFrame) -> tuple[Figure, pl.DataFrame]:
    """Fig 5a: per dataset, how the share of variants that flip a question is distributed."""
    data = require_rows(question_flip_hist(question_flips), "per-question flip rates")
    labels = labels_in_order(data)
    fig, axes = panels(len(labels))
    for ax, label in zip(axes, labels, strict=True):
        panel = data.filter(data["label"] == label)
        ax.bar(panel["bin_lo"], panel["pct_questions"], width=panel["bin_hi"] - panel["bin_lo"], align="edge",
               color=color(0), edgecolor="white", linewidth=0.4)
        ax.set_title(f"{label} (n={int(panel['n_questions'].sum()):,})")
        ax.set_xlim(-6, 106)
        ax.set_xlabel("% of variants whose response flipped")
        ax.set_ylabel("% of questions")
        style_axes(ax)
    fig.suptitle("Flips concentrate on some questions (fig 5a)")
    return fig, data


def pooled_groups(groups: pl.DataFrame) -> pl.DataFrame:
    """Group rows pooled over each dataset's subsets (percentages weighted by ``n_rows``)."""
    import polars as pl

    keys = ["label", "level", "level_model", "group"]
    pcts = ["pct_flipped", "pct_bias_flipped", "pct_unb_to_b", "pct_b_to_unb"]
    w = pl.col("n_rows")
    return (
        groups.filter(w > 0).with_columns(dataset_label(), pl.col("level_model").fill_null("(all)"))
        .group_by(keys).agg(pl.col("n_questions").sum(), w.sum(),
                            *((pl.col(c) * w).sum() / w.sum() for c in pcts))
        .with_columns((pl.col("pct_unb_to_b") - pl.col("pct_b_to_unb")).alias("diff_unb_to_b"))
        .sort(keys)
    )


def default_group_dataset(labels: list[str]) -> str:
    """``BBQ (ambig)`` (the paper's), else another BBQ label, else the first label."""
    bbq = sorted(lab for lab in labels if lab.startswith("BBQ"))
    return "BBQ (ambig)" if "BBQ (ambig)" in bbq else (bbq or sorted(labels))[0]


def extreme_groups(groups: pl.DataFrame, dataset: str | None = None, n_extreme: int = 2) -> pl.DataFrame:
    """Per level, the ``n_extreme`` rows with the lowest and the highest ``diff_unb_to_b``."""
    import polars as pl

    pooled = require_rows(pooled_groups(groups), "social-group rows")
    dataset = dataset or default_group_dataset(pooled["label"].unique().to_list())
    rows = pooled.filter(pl.col("label") == dataset)
    picks = []
    for level in LEVEL_TITLES:
        lv = rows.filter(pl.col("level") == level).sort("diff_unb_to_b", "group", "level_model")
        if lv.height:
            picks.append(pl.concat([lv.head(n_extreme), lv.tail(n_extreme)]).unique(maintain_order=True))
    if not picks:
        raise NoFigureData(f"no social-group rows for {dataset!r}")
    return pl.concat(picks)


@styled
def fig5b_groups(groups: pl.DataFrame, dataset: str | None = None) -> tuple[Figure, pl.DataFrame]:
    """Fig 5b: bias flips (U→B overlaid) of the groups with the most lopsided flips, at 3 levels."""
    data = extreme_groups(groups, dataset)
    levels = [lv for lv in LEVEL_TITLES if lv in set(data["level"].to_list())]
    fig, axes = panels(len(levels), ncols=len(levels), size=(4.4, 0.6 * data.height / len(levels) + 1.8))
    for ax, level in zip(axes, levels, strict=True):
        panel = data.filter(data["level"] == level)
        names = [g if level == "all" else f"{g}\n{shorten(m, 34)}"
                 for g, m in zip(panel["group"], panel["level_model"], strict=True)]
        y = range(panel.height)
        ax.barh(y, panel["pct_bias_flipped"], height=0.7, color=color(4), label="bias flipped (total)")
        ax.barh(y, panel["pct_unb_to_b"], height=0.35, color=color(3), label="unbiased → biased")
        for i, d in enumerate(panel["diff_unb_to_b"].to_list()):
            ax.text(float(panel["pct_bias_flipped"][i]) + 0.3, i, f"Δ {d:+.1f}", va="center", fontsize=7)
        ax.set_yticks(list(y), names)
        ax.invert_yaxis()
        ax.set_xlim(0, float(panel["pct_bias_flipped"].max()) * 1.35 + 0.5)
        ax.set_xlabel("% of question × variant rows")
        ax.set_title(LEVEL_TITLES[level])
        style_axes(ax, grid_axis="x")
    legend_outside(fig, axes[0])
    fig.suptitle(f"{data['label'][0]}: social groups with the most asymmetric bias flips (fig 5b)")
    return fig, data


def default_group(pooled: pl.DataFrame) -> str:
    """``male`` if present, else the group present in most datasets (ties alphabetical)."""
    import polars as pl

    names = set(pooled["group"].to_list())
    if "male" in names:
        return "male"
    counts = pooled.group_by("group").agg(pl.col("label").n_unique().alias("n")).sort(
        ["n", "group"], descending=[True, False])
    return counts["group"][0]


@styled
def fig5c_group_across_datasets(groups: pl.DataFrame, group: str | None = None) -> tuple[Figure, pl.DataFrame]:
    """Fig 5c: one social group's U→B and B→U flips (across all variants) in every dataset."""
    import polars as pl
    from matplotlib.figure import Figure

    pooled = require_rows(pooled_groups(groups).filter(pl.col("level") == "all"), "social-group rows (level all)")
    group = group or default_group(pooled)
    data = require_rows(pooled.filter(pl.col("group") == group).sort("label"), f"rows of group {group!r}")
    labels = data["label"].to_list()
    fig = Figure(figsize=(7.0, 0.6 * len(labels) + 1.6), layout="constrained")
    ax = fig.add_subplot()
    for k, (col, name) in enumerate((("pct_unb_to_b", "unbiased → biased"), ("pct_b_to_unb", "biased → unbiased"))):
        ax.barh([i + (k - 0.5) * 0.38 for i in range(len(labels))], data[col], height=0.36,
                color=color(3 if k == 0 else 0), label=name)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("% of question × variant rows")
    ax.set_title(f"Group {group!r}: direction of bias flips across datasets (fig 5c)")
    style_axes(ax, grid_axis="x")
    legend_outside(fig, ax)
    return fig, data
