"""Report figures and table of the gap to a reference distribution (docs/reference-gap.md).

* R1: TV per occupation and model, with its interval and the noise floor (95th percentile);
* R2: signed gaps (observed share - reference share) per occupation and category;
* R3: the paired change of TV per variant, over occupations (with its CI) and per occupation.

Each figure takes the analysis table(s) named by its arguments and returns ``(Figure, plotted
frame)``; empty input raises :class:`~ray_bench.report.style.NoFigureData`. ``cap_r1`` .. ``cap_r3``
are their captions (:data:`ray_bench.report.figures.REFERENCE_FIGURES` pairs them);
:data:`REFERENCE_TABLE_COLUMNS` the columns the report reads from each table (for
``report.load.OPTIONAL_TABLES``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ray_bench.report.style import BASE_COLOR, color, n_distinct, panels, require_rows, shorten, style_axes, styled

if TYPE_CHECKING:
    import polars as pl
    from matplotlib.figure import Figure

ALL = "(all)"
#: Diverging, colour-blind-safe map of the signed gaps (0 = white).
GAP_CMAP = "PuOr"
#: At most this many (attribute, model) panels in R2.
MAX_GAP_PANELS = 6
_MODEL = ("model", "base", "role", "q_label")
REFERENCE_TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "reference_gap": (*_MODEL, "reference", "attribute", "occupation", "n", "tv", "tv_lo", "tv_hi", "floor_q95",
                      "unknown_rate"),
    "reference_gap_categories": (*_MODEL, "attribute", "occupation", "category", "gap"),
    "reference_gap_summary": (*_MODEL, "reference", "attribute", "n_occupations", "n", "unknown_rate", "mean_tv",
                              "weighted_tv", "worst_tv", "worst_occupation", "mean_floor", "share_above_floor",
                              "share_g_reject"),
    "reference_gap_pairs": ("base", "variant", "role", "q_label", "attribute", "occupation", "n", "diff", "ci_lo",
                            "ci_hi", "p_value", "status"),
}


def _model_order(frame: pl.DataFrame) -> list[str]:
    """Bases first, then variants and controls, each alphabetically."""
    rows = frame.select("model", "role").unique().sort("model").iter_rows()
    pairs = list(rows)
    return [m for m, r in pairs if r == "base"] + [m for m, r in pairs if r != "base"]


def _model_colors(models: list[str], roles: dict[str, str]) -> dict[str, str]:
    colors, i = {}, 0
    for model in models:
        if roles[model] == "base":
            colors[model] = BASE_COLOR
        else:
            colors[model] = color(i)
            i += 1
    return colors


@styled
def figR1_reference_tv(reference_gap: pl.DataFrame) -> tuple[Figure, pl.DataFrame]:
    """R1: TV to the reference per occupation (rows) and model (markers), CI bars, floor ticks."""
    import polars as pl

    data = require_rows(reference_gap.filter(pl.col("n") > 0).select(
        "attribute", "occupation", "model", "role", "q_label", "n", "tv", "tv_lo", "tv_hi", "floor_q95"),
        "reference-gap rows with a categorized answer")
    attributes = list(dict.fromkeys(data["attribute"].to_list()))
    models = _model_order(data)
    roles = dict(data.select("model", "role").unique().iter_rows())
    colors = _model_colors(models, roles)
    occupations = list(dict.fromkeys(data["occupation"].to_list()))
    fig, axes = panels(len(attributes), ncols=3, size=(4.2, 0.26 * len(occupations) + 1.4))
    offsets = {m: (i - (len(models) - 1) / 2) * 0.7 / max(1, len(models)) for i, m in enumerate(models)}
    for ax, attribute in zip(axes, attributes, strict=True):
        panel = data.filter(pl.col("attribute") == attribute)
        floor = panel.group_by("occupation").agg(pl.col("floor_q95").max())
        floors = dict(floor.iter_rows())
        for model in models:
            sub = panel.filter(pl.col("model") == model)
            y = [occupations.index(o) + offsets[model] for o in sub["occupation"].to_list()]
            err = [(sub["tv"] - sub["tv_lo"]).clip(0).to_list(), (sub["tv_hi"] - sub["tv"]).clip(0).to_list()]
            ax.errorbar(sub["tv"].to_list(), y, xerr=err, fmt="o", markersize=3.5, linewidth=0.9,
                        color=colors[model], label=shorten(model, 24))
        ax.scatter([floors.get(o, float("nan")) for o in occupations], range(len(occupations)), marker="|",
                   s=80, color="#555555", label="noise floor (95th pct)", zorder=3)
        ax.set_yticks(range(len(occupations)), [shorten(o, 26) for o in occupations])
        ax.invert_yaxis()
        ax.set_xlim(left=0)
        ax.set_title(attribute)
        ax.set_xlabel("TV to the reference")
        style_axes(ax, grid_axis="x")
    axes[0].legend(frameon=False, fontsize=7, loc="lower right")
    fig.suptitle("Gap to the reference distribution per occupation (fig R1)")
    return fig, data


@styled
def figR2_signed_gaps(reference_gap_categories: pl.DataFrame) -> tuple[Figure, pl.DataFrame]:
    """R2: observed - reference share per occupation (rows) and category (columns), per attribute and model."""
    import polars as pl

    data = require_rows(reference_gap_categories.filter(pl.col("gap").is_not_nan()).select(
        "attribute", "model", "role", "q_label", "occupation", "category", "gap"), "signed gaps")
    attributes = list(dict.fromkeys(data["attribute"].to_list()))
    combos = [(a, m) for a in attributes for m in _model_order(data.filter(pl.col("attribute") == a))]
    combos = combos[:MAX_GAP_PANELS]
    data = data.join(pl.DataFrame(combos, schema=["attribute", "model"], orient="row"), on=["attribute", "model"],
                     how="semi")
    occupations = list(dict.fromkeys(data["occupation"].to_list()))
    fig, axes = panels(len(combos), ncols=3, size=(3.6, 0.26 * len(occupations) + 1.4))
    limit = max(0.05, float(data["gap"].abs().max()))
    image = None
    for ax, (attribute, model) in zip(axes, combos, strict=True):
        panel = data.filter((pl.col("attribute") == attribute) & (pl.col("model") == model))
        categories = list(dict.fromkeys(panel["category"].to_list()))
        cells = {(o, c): g for o, c, g in panel.select("occupation", "category", "gap").iter_rows()}
        grid = [[cells.get((o, c), float("nan")) for c in categories] for o in occupations]
        image = ax.imshow(grid, cmap=GAP_CMAP, vmin=-limit, vmax=limit, aspect="auto")
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                if v == v:  # not NaN
                    ax.text(j, i, f"{v:+.2f}", ha="center", va="center", fontsize=6,
                            color="white" if abs(v) > 0.6 * limit else "black")
        ax.set_xticks(range(len(categories)), categories, rotation=30, ha="right")
        ax.set_yticks(range(len(occupations)), [shorten(o, 26) for o in occupations])
        ax.set_title(f"{attribute}: {shorten(model, 22)}")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label="observed − reference share")
    fig.suptitle("Over- (+) and under-representation (−) per category (fig R2)")
    return fig, data


@styled
def figR3_pair_change(reference_gap_pairs: pl.DataFrame) -> tuple[Figure, pl.DataFrame]:
    """R3: change of TV (variant − base) per variant: mean over occupations with CI, occupations as dots."""
    import polars as pl

    data = require_rows(reference_gap_pairs.filter(pl.col("status") == "tested").select(
        "attribute", "base", "variant", "role", "q_label", "occupation", "diff", "ci_lo", "ci_hi", "p_value"),
        "tested paired reference-gap rows")
    attributes = list(dict.fromkeys(data["attribute"].to_list()))
    variants = sorted(set(data["variant"].to_list()))
    fig, axes = panels(len(attributes), ncols=3, size=(4.0, 0.45 * len(variants) + 1.6))
    for ax, attribute in zip(axes, attributes, strict=True):
        panel = data.filter(pl.col("attribute") == attribute)
        for i, variant in enumerate(variants):
            sub = panel.filter(pl.col("variant") == variant)
            occ = sub.filter(pl.col("occupation") != ALL)
            ax.scatter(occ["diff"].to_list(), [i] * occ.height, s=9, color=color(i), alpha=0.35, linewidths=0)
            agg = sub.filter(pl.col("occupation") == ALL)
            if agg.height:
                r = agg.row(0, named=True)
                xerr = [[max(0.0, r["diff"] - r["ci_lo"])], [max(0.0, r["ci_hi"] - r["diff"])]]
                ax.errorbar([r["diff"]], [i], xerr=xerr, fmt="D", markersize=5, color=color(i), linewidth=1.4)
        ax.axvline(0, color="#555555", linewidth=0.8, linestyle=":")
        ax.set_yticks(range(len(variants)), [shorten(v, 26) for v in variants])
        ax.invert_yaxis()
        ax.set_title(attribute)
        ax.set_xlabel("Δ TV (variant − base)")
        style_axes(ax, grid_axis="x")
    fig.suptitle("Change of the gap to the reference under quantization (fig R3)")
    return fig, data


def cap_r1(f: dict, data: pl.DataFrame, _o: dict) -> str:
    gap = f["reference_gap"]
    ref = gap["reference"][0] if gap.height else "?"
    return (f"Total variation distance between each model's category shares and reference table {ref} for "
            f"{n_distinct(data, 'occupation')} occupations, {n_distinct(data, 'attribute')} attributes and {n_distinct(data, 'model')} models "
            f"({int(data['n'].sum()):,} categorized answers; answers without a category are left out of the shares "
            f"and counted in reference_gap.unknown_rate). Bars: 95% interval; ticks: 95th percentile of the TV that "
            f"a model sampling exactly from the reference shows at the same N (noise floor): only a TV right of its "
            f"tick is a gap beyond sampling noise.")


def cap_r2(f: dict, data: pl.DataFrame, _o: dict) -> str:
    return (f"Observed share − reference share per category for {n_distinct(data, 'occupation')} occupations "
            f"(at most {MAX_GAP_PANELS} attribute × model panels: bases first). Positive: the category is named more "
            f"often than the reference has it.")


def cap_r3(f: dict, data: pl.DataFrame, o: dict) -> str:
    occ = data.filter(data["occupation"] != ALL)
    return (f"Diamonds: mean over occupations of TV(variant) − TV(base) with its 95% stratified paired bootstrap "
            f"interval; dots: the {occ.height:,} tested occupations (paired on the same question ids and seeds). "
            f"{n_distinct(data, 'variant')} variant{'s' * (n_distinct(data, 'variant') != 1)}; p-values (matched-pairs swap permutation test, per occupation and over "
            f"occupations) and the Wilcoxon signed-rank test are in reference_gap_pairs.")


def reference_gap_summary_table(summary: pl.DataFrame) -> tuple[str, pl.DataFrame]:
    """HTML table of ``reference_gap_summary``: per model and attribute, mean / weighted / worst TV and the floor."""
    from ray_bench.report.html_tables import fmt, render_table

    cols = ["model", "q_label", "attribute", "n_occupations", "n", "unknown_rate", "mean_tv", "weighted_tv",
            "worst_tv", "worst_occupation", "mean_floor", "share_above_floor", "share_g_reject"]
    data = summary.select(cols).sort("attribute", "model")
    header = ["model", "label", "attribute", "occupations", "answers", "% unknown", "mean TV", "weighted TV",
              "worst TV", "worst occupation", "mean floor", "% above floor", "% G-test rejects"]
    rows = []
    for r in data.iter_rows(named=True):
        rows.append([r["model"], r["q_label"], r["attribute"], fmt(r["n_occupations"]), fmt(r["n"]),
                     fmt(100 * r["unknown_rate"], 1), fmt(r["mean_tv"], 3), fmt(r["weighted_tv"], 3),
                     fmt(r["worst_tv"], 3), r["worst_occupation"] or "–", fmt(r["mean_floor"], 3),
                     fmt(100 * r["share_above_floor"], 0), fmt(100 * r["share_g_reject"], 0)])
    return render_table(header, rows, numeric_from=3), data
