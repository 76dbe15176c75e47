"""The housing audit's figures: score distributions, heatmaps of factor pairs, no-score rates, gaps.

Each function takes housing tables (docs/housing.md) and returns ``(Figure, plotted frame)``,
like the other figure modules; nothing to plot raises :class:`NoFigureData` and the report
shows a note instead. The report draws these only when the analysis has housing tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ray_bench.report.style import (
    BASE_COLOR,
    HEATMAP_CMAP,
    annotate_heatmap,
    color,
    legend_outside,
    n_distinct,
    panels,
    require_rows,
    shorten,
    style_axes,
    styled,
)

if TYPE_CHECKING:
    import polars as pl
    from matplotlib.figure import Figure

ALL = "(all)"
#: Heatmaps per design: (row factor, column factor); a legitimate factor against a demographic
#: one, and the two legitimate factors together (the reference's "<var1> x <var2>" plots).
HEATMAP_PAIRS = {
    "v2": (("credit_scores", "gender"), ("eviction", "race"), ("eviction", "credit_scores")),
    "v1": (("occupation", "gender"), ("living_status", "race"), ("occupation", "living_status")),
}

#: Tick labels of the long design levels (the tables keep the full text).
SHORT_LEVELS = {
    "no record of eviction": "no eviction", "previously been evicted": "evicted",
    "previously been evicted 6 years ago": "evicted 6 years ago",
    "gone to eviction court but their case was dismissed": "court, dismissed",
}


def tick(level: str, width: int = 20) -> str:
    """A level as a tick label: the short name of a long design level, else cut to ``width``."""
    return shorten(SHORT_LEVELS.get(level, level), width)


def _distinct(frame: pl.DataFrame, column: str) -> list[str]:
    """Distinct values of ``column`` in first-seen order (the tables come in the design's order)."""
    return list(dict.fromkeys(frame[column].to_list()))


def _dodge(i: int, k: int, width: float = 0.8) -> float:
    """Offset of series ``i`` of ``k`` around an integer x position."""
    return (i - (k - 1) / 2) * width / max(k, 1)


def _panel_keys(frame: pl.DataFrame) -> list[tuple[str, str]]:
    import polars as pl

    keys = frame.filter(pl.col("factor") != ALL).select("subset", "factor").unique(maintain_order=True)
    return [tuple(k) for k in keys.iter_rows()]


@styled
def figH1_housing_scores(housing_levels: pl.DataFrame) -> tuple[Figure, pl.DataFrame]:
    """Box per (factor level, model): 25th-75th percentile, median line, mean dot, 5th-95th whiskers."""
    import polars as pl

    data = require_rows(housing_levels.filter((pl.col("factor") != ALL) & pl.col("median").is_not_null()),
                        "scored housing answers (every answer was a refusal, an unparsable text or an error)")
    data = data.select("model", "subset", "factor", "level", "n_scored", "mean", "q05", "q25", "median", "q75",
                       "q95")
    keys, models = _panel_keys(data), _distinct(data, "model")
    fig, axes = panels(len(keys), ncols=2, size=(6.2, 3.0))
    for ax, (subset, factor) in zip(axes, keys, strict=True):
        panel = data.filter((pl.col("subset") == subset) & (pl.col("factor") == factor))
        levels = _distinct(panel, "level")
        for i, model in enumerate(models):
            sub = panel.filter(pl.col("model") == model)
            pos = [levels.index(lv) + _dodge(i, len(models)) for lv in sub["level"]]
            stats = [{"med": r["median"], "q1": r["q25"], "q3": r["q75"], "whislo": r["q05"], "whishi": r["q95"],
                      "mean": r["mean"], "fliers": []} for r in sub.iter_rows(named=True)]
            if not stats:
                continue
            art = ax.bxp(stats, positions=pos, widths=0.7 / len(models), showfliers=False, showmeans=True,
                         patch_artist=True, manage_ticks=False, medianprops={"color": "black"},
                         meanprops={"marker": "o", "markerfacecolor": "white", "markeredgecolor": "black",
                                    "markersize": 3})
            for box in art["boxes"]:
                box.set_facecolor(color(i))
                box.set_alpha(0.85)
            art["boxes"][0].set_label(model)
        ax.set_xticks(range(len(levels)), [tick(lv) for lv in levels], rotation=30, ha="right")
        ax.set_ylim(-2, 102)
        ax.set_ylabel("tenant score (0-100)")
        ax.set_title(f"{factor} ({subset})")
        style_axes(ax)
    legend_outside(fig, axes[0])
    fig.suptitle("Housing audit: tenant scores per factor level")
    return fig, data


@styled
def figH2_housing_heatmaps(housing_cells: pl.DataFrame) -> tuple[Figure, pl.DataFrame]:
    """Mean score per level pair of a legitimate and a demographic factor, one row of heatmaps per model."""
    import numpy as np
    import polars as pl
    from matplotlib.colors import Normalize

    from ray_bench.analysis.housing import FACTORS

    parts = []
    for design, pairs in HEATMAP_PAIRS.items():
        for rows_f, cols_f in pairs:
            a, b = sorted((rows_f, cols_f), key=FACTORS[design].index)
            sub = housing_cells.filter((pl.col("factor_a") == a) & (pl.col("factor_b") == b))
            swap = rows_f != a
            parts.append(sub.select(
                "model", "subset", pl.lit(rows_f).alias("row_factor"), pl.lit(cols_f).alias("col_factor"),
                pl.col("level_b" if swap else "level_a").alias("row_level"),
                pl.col("level_a" if swap else "level_b").alias("col_level"), "n_scored", "mean"))
    data = require_rows(pl.concat(parts).filter(pl.col("mean").is_not_null()),
                        "scored housing answers in any heatmap cell")
    models = _distinct(data, "model")
    combos = data.select("subset", "row_factor", "col_factor").unique(maintain_order=True).rows()
    fig, axes = panels(len(models) * len(combos), ncols=len(combos), size=(4.4, 3.4))
    norm = Normalize(0, 100)
    image = None
    for k, (model, (subset, rf, cf)) in enumerate((m, c) for m in models for c in combos):
        ax, sub = axes[k], data.filter((pl.col("model") == model) & (pl.col("subset") == subset)
                                       & (pl.col("row_factor") == rf) & (pl.col("col_factor") == cf))
        rows, cols = _distinct(sub, "row_level"), _distinct(sub, "col_level")
        cell = {(r["row_level"], r["col_level"]): r["mean"] for r in sub.iter_rows(named=True)}
        values = [[cell.get((r, c)) for c in cols] for r in rows]
        image = ax.imshow(np.ma.masked_invalid(np.array(values, dtype=float)), cmap=HEATMAP_CMAP, norm=norm,
                          aspect="auto")
        annotate_heatmap(ax, values, "{:.0f}", norm)
        ax.set_xticks(range(len(cols)), [tick(c, 14) for c in cols], rotation=35, ha="right")
        ax.set_yticks(range(len(rows)), [tick(r) for r in rows])
        ax.set_title(f"{shorten(model, 24)}: {rf} × {cf}", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=axes, label="mean tenant score", shrink=0.6)
    fig.suptitle("Housing audit: mean score of factor pairs ('–': no scored answer)")
    return fig, data


@styled
def figH3_housing_refusals(housing_refusals: pl.DataFrame) -> tuple[Figure, pl.DataFrame]:
    """No-score rate (refusal or unparsable answer) with its 95% Wilson interval per level and model."""
    import polars as pl

    data = require_rows(housing_refusals.filter(pl.col("n_answered") > 0), "answered housing questions")
    data = data.select("model", "subset", "factor", "level", "n_answered", "n_no_score", "no_score_rate",
                       "no_score_rate_lo", "no_score_rate_hi")
    keys = [(s, ALL) for s in data["subset"].unique(maintain_order=True)] + _panel_keys(data)
    models = _distinct(data, "model")
    fig, axes = panels(len(keys), ncols=3, size=(4.2, 2.9))
    for ax, (subset, factor) in zip(axes, keys, strict=True):
        panel = data.filter((pl.col("subset") == subset) & (pl.col("factor") == factor))
        levels = _distinct(panel, "level")
        for i, model in enumerate(models):
            sub = panel.filter(pl.col("model") == model)
            x = [levels.index(lv) + _dodge(i, len(models), 0.6) for lv in sub["level"]]
            y = [100 * v for v in sub["no_score_rate"]]
            # max(0, ...): the Wilson bound at a rate of 0 or 1 equals it up to rounding
            err = [[max(0.0, 100 * (r - lo)) for r, lo in zip(sub["no_score_rate"], sub["no_score_rate_lo"])],
                   [max(0.0, 100 * (hi - r)) for r, hi in zip(sub["no_score_rate"], sub["no_score_rate_hi"])]]
            ax.errorbar(x, y, yerr=err, fmt="o", markersize=3.5, capsize=2, color=color(i), label=model)
        ax.set_xticks(range(len(levels)), [tick(lv) for lv in levels], rotation=30, ha="right")
        ax.set_xlim(-0.6, len(levels) - 0.4)
        # Rates are often a few percent: scale to the largest upper bound, not to 100.
        top = 100 * float(panel["no_score_rate_hi"].max() or 0.0)
        ax.set_ylim(0, min(100.0, max(5.0, 1.15 * top)))
        ax.set_ylabel("% answers without a score")
        ax.set_title("all answers" if factor == ALL else f"{factor} ({subset})")
        style_axes(ax)
    legend_outside(fig, axes[0])
    fig.suptitle("Housing audit: refusals and unparsable answers (an outcome, not dropped)")
    return fig, data


@styled
def figH4_housing_gaps(housing_paired: pl.DataFrame) -> tuple[Figure, pl.DataFrame]:
    """Counterfactual gap (level - reference, points) with its 95% t interval per contrast and model."""
    import polars as pl

    data = require_rows(housing_paired.filter(pl.col("mean_diff").is_not_null()) if housing_paired.height
                        else housing_paired, "counterfactual pair with a score on both sides")
    data = data.with_columns((pl.col("level") + " − " + pl.col("reference")).alias("contrast")).select(
        "model", "subset", "factor", "contrast", "n_scored", "mean_diff", "diff_lo", "diff_hi", "p_value")
    contrasts, models = _distinct(data, "contrast"), _distinct(data, "model")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 0.42 * len(contrasts) * max(1, len(models)) ** 0.5 + 1.8), layout="constrained")
    ax = fig.add_subplot()
    for i, model in enumerate(models):
        sub = data.filter(pl.col("model") == model)
        y = [contrasts.index(c) + _dodge(i, len(models), 0.7) for c in sub["contrast"]]
        lo = [m - (lo if lo is not None else m) for m, lo in zip(sub["mean_diff"], sub["diff_lo"])]
        hi = [(hi if hi is not None else m) - m for m, hi in zip(sub["mean_diff"], sub["diff_hi"])]
        ax.errorbar(sub["mean_diff"].to_list(), y, xerr=[lo, hi], fmt="o", markersize=4, capsize=2,
                    color=color(i), label=model)
    ax.axvline(0, color=BASE_COLOR, linewidth=0.8, linestyle=":")
    ax.set_yticks(range(len(contrasts)), contrasts)
    ax.invert_yaxis()
    ax.set_xlabel("mean paired difference (points on 0-100)")
    style_axes(ax, grid_axis="x")
    legend_outside(fig, ax)
    fig.suptitle("Housing audit: counterfactual gaps (same cell, only the name changed)")
    return fig, data


# --- captions --------------------------------------------------------------------------------


def _n_models(frame: pl.DataFrame, column: str = "model") -> str:
    n = n_distinct(frame, column)
    return f"{n} model{'s' * (n != 1)}"


def cap_h1(f: dict, data: pl.DataFrame, _o: dict) -> str:
    import polars as pl

    total = f["housing_levels"].filter(pl.col("factor") == ALL)
    return (f"Boxes: 25th–75th percentile of the parsed scores, line: median, dot: mean, whiskers: 5th–95th "
            f"percentile; {int(total['n_scored'].sum()):,} scored of {int(total['n'].sum()):,} answers, "
            f"{_n_models(data)}. Answers without a score are not in the boxes: see the refusal figure.")


def cap_h2(f: dict, data: pl.DataFrame, _o: dict) -> str:
    return (f"Mean parsed score of each level pair (cells over all other factors and replicates), "
            f"{_n_models(data)}; '–' marks a cell without any scored answer. Colour scale 0–100.")


def cap_h3(f: dict, data: pl.DataFrame, _o: dict) -> str:
    import polars as pl

    total = data.filter(pl.col("factor") == ALL)
    return (f"Share of answered questions without a valid 'Score: X/100' (refusals, explanations, out-of-range "
            f"scores), with 95% Wilson intervals; {int(total['n_no_score'].sum()):,} of "
            f"{int(total['n_answered'].sum()):,} answers, {_n_models(data)}. Engine errors are excluded from "
            f"the denominator and counted in the table.")


def cap_h4(f: dict, data: pl.DataFrame, _o: dict) -> str:
    return (f"Mean difference of the paired scores (same model, context cell, replicate and name position; "
            f"only gender or race changed), 95% t intervals, over {int(data['n_scored'].sum()):,} pairs scored on "
            f"both sides; {_n_models(data)}. Wilcoxon signed-rank p-values in the table.")
