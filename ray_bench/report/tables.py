"""Readable tables (rich) of analysis frames."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl
    from rich.table import Table

_BINS = ("low", "medium", "high")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def flip_rich_table(flips: pl.DataFrame, base: str) -> Table:
    """The flip table as printed by ``ray-bench analyze`` and the demo.

    One row per (model, dataset): questions paired, flip rate, then for each
    base-entropy bin the share of questions in it and the % of those that flipped.
    """
    from rich.table import Table

    table = Table(title=f"Response flips vs base model {base!r}, by the base model's normalized entropy")
    for col in ("model", "dataset", "n", "flipped"):
        table.add_column(col, justify="left" if col in ("model", "dataset") else "right")
    for b in _BINS:
        table.add_column(f"{b}\nshare / flipped", justify="right")
    for row in flips.iter_rows(named=True):
        cells = [row["model"], row["subset"], str(row["n_questions"]), _pct(row["flip_rate"])]
        cells += [f"{_pct(row[f'{b}_share'])} / {_pct(row[f'{b}_flip_rate'])}" for b in _BINS]
        table.add_row(*cells)
    return table
