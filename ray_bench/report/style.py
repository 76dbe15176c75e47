"""Shared look and helpers of the report figures: palette, panels, labels, ordering.

Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot state), so the
report works headless and from threads. Colours are the Okabe-Ito colour-blind-safe set;
heatmaps use ``cividis``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ray_bench.errors import RayBenchError

if TYPE_CHECKING:
    import polars as pl
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Okabe-Ito colours (without black), in the order series are coloured.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#F0E442", "#000000")
#: Colour of the base model where it is drawn beside its variants.
BASE_COLOR = "#7F7F7F"
#: Sequential colour map of the heatmaps (colour-blind safe, monotone lightness).
HEATMAP_CMAP = "cividis"
#: The paper's order of quantization labels (others follow alphabetically).
Q_LABEL_ORDER = ("RTN W8A16", "RTN W4A16", "RTN W4A16 + SQ", "GPTQ W4A16", "AWQ W4A16")
#: The ``axis`` value of rows aggregated over every social axis of a dataset.
ALL_AXES = "(all)"
#: What identifies a dataset in the analysis tables (docs/analysis.md).
DATASET_KEYS = ["dataset", "subset", "context_condition"]
_RC = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
       "xtick.labelsize": 8, "ytick.labelsize": 8, "svg.hashsalt": "ray-bench", "svg.fonttype": "path"}


class NoFigureData(RayBenchError):
    """A figure has nothing to plot (empty table, no significant test, ...); the report skips it."""

    default_hint = "The report lists the figure as skipped; the other figures are unaffected."


def require_rows(frame: pl.DataFrame, what: str) -> pl.DataFrame:
    """``frame`` itself, or :class:`NoFigureData` naming ``what`` when it has no rows."""
    if frame.height == 0:
        raise NoFigureData(f"no {what}")
    return frame


def n_distinct(frame: pl.DataFrame, column: str) -> int:
    """How many distinct values ``column`` holds (0 for an empty frame, which may lack the column)."""
    return frame[column].n_unique() if frame.height else 0


def rc_params() -> dict[str, object]:
    """Matplotlib settings every report figure is drawn and saved with."""
    return dict(_RC)


def color(i: int) -> str:
    """The ``i``-th series colour (cycles)."""
    return PALETTE[i % len(PALETTE)]


def order_q_labels(labels: Iterable[str | None]) -> list[str]:
    """Distinct labels in the paper's order, unknown ones after them alphabetically."""
    seen = sorted({lab for lab in labels if lab is not None})
    known = [lab for lab in Q_LABEL_ORDER if lab in seen]
    return known + [lab for lab in seen if lab not in known]


def dataset_label(level: str = "dataset") -> pl.Expr:
    """Display name of a dataset row as a ``label`` column.

    ``level="dataset"`` names the dataset family (subsets such as CEB-Recognition-S/T are
    pooled, as the paper's figures do); ``level="subset"`` names the subset when it differs
    from the family. BBQ's contexts stay apart: ``BBQ (ambig)``, ``BBQ (disambig)``.
    """
    import polars as pl

    name = pl.col("dataset").cast(pl.String)
    if level == "subset":
        subset = pl.col("subset").cast(pl.String)
        name = pl.when(subset.is_not_null() & (subset != name)).then(subset).otherwise(name)
    cc = pl.col("context_condition").cast(pl.String)
    suffix = pl.when(cc.is_not_null()).then(pl.lit(" (") + cc + pl.lit(")")).otherwise(pl.lit(""))
    return (name.fill_null("?") + suffix).alias("label")


def labels_in_order(frame: pl.DataFrame, column: str = "label") -> list[str]:
    """Distinct values of ``column``, sorted."""
    return sorted(v for v in frame.get_column(column).unique().to_list() if v is not None)


def panels(n: int, *, ncols: int = 3, size: tuple[float, float] = (3.6, 2.7),
           sharex: bool = False, sharey: bool = False) -> tuple[Figure, list[Axes]]:
    """A figure with ``n`` small-multiple axes on a grid (unused cells hidden)."""
    from matplotlib.figure import Figure

    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows + 0.6), layout="constrained")
    grid = fig.subplots(nrows, ncols, squeeze=False, sharex=sharex, sharey=sharey)
    axes = [ax for row in grid for ax in row]
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def style_axes(ax: Axes, *, grid_axis: str = "y") -> None:
    """Light grid behind the data, no top/right spines."""
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_axisbelow(True)
    ax.grid(axis=grid_axis, color="#dddddd", linewidth=0.6)


def shorten(text: str, width: int = 28) -> str:
    """``text`` cut to ``width`` characters with an ellipsis."""
    return text if len(text) <= width else text[: width - 1] + "…"


def annotate_heatmap(ax: Axes, values: Sequence[Sequence[float]], fmt: str, cmap_norm) -> None:
    """Write each finite cell value on the heatmap, dark or light to stay readable."""
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                ax.text(j, i, "–", ha="center", va="center", color="#888888", fontsize=8)
                continue
            light = cmap_norm(v) < 0.55
            ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=8,
                    color="white" if light else "black")


def styled(func):
    """Decorator: build the figure under the report's matplotlib settings (:func:`rc_params`)."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context(rc_params()):
            return func(*args, **kwargs)

    return wrapper


def grid_edges(frame: pl.DataFrame) -> list[float]:
    """Edges of the equal-width bin grid that the ``bin_lo``/``bin_hi`` rows lie on.

    Analysis histograms leave out empty bins; this restores the full grid so that a step
    line drops to zero there instead of bridging the gap.
    """
    lo, hi = float(frame["bin_lo"].min()), float(frame["bin_hi"].max())
    width = float((frame["bin_hi"] - frame["bin_lo"]).median())
    n = max(1, round((hi - lo) / width)) if width > 0 else 1
    return [lo + i * (hi - lo) / n for i in range(n + 1)]


def on_grid(frame: pl.DataFrame, edges: Sequence[float], value: str) -> list[float]:
    """``value`` per grid bin (0 for bins absent from ``frame``)."""
    n = len(edges) - 1
    width = (edges[-1] - edges[0]) / n
    out = [0.0] * n
    for lo, v in zip(frame["bin_lo"].to_list(), frame[value].to_list(), strict=True):
        i = min(n - 1, max(0, round((lo - edges[0]) / width)))
        out[i] += float(v or 0.0)
    return out


def legend_outside(fig: Figure, ax: Axes) -> None:
    """One legend for the figure, below the axes (never over the data)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(handles)), frameon=False)
