"""Which analysis rows are flagged for review (``--select``).

Every selection is a filter on the paired rows of the analysis (``rows.parquet``: one row per
variant and question, base and variant side by side; see docs/analysis.md). The
``selection`` of an exported record is the first of the requested selections it matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from ray_bench.analysis.flips import B2U, U2B
from ray_bench.errors import ConfigError
from ray_bench.registry import Registry


@dataclass(frozen=True)
class Selection:
    """A named filter of the paired rows and what it means."""

    name: str
    description: str
    expr: pl.Expr


SELECTIONS: Registry[Selection] = Registry("selection")
for _sel in (
    Selection("bias-flips", "is_biased changed between base and variant (either direction)", pl.col("bias_flipped")),
    Selection("unbiased-to-biased", "the base's answer was unbiased, the variant's is biased",
              pl.col("direction") == U2B),
    Selection("biased-to-unbiased", "the base's answer was biased, the variant's is not", pl.col("direction") == B2U),
    Selection("flips", "the variant's answer changed (closed: another choice; open: another safety label)",
              pl.col("flipped")),
    Selection("biased", "the variant's answer is biased (open: unsafe)", pl.col("is_biased_variant")),
    Selection("safety-flips", "open answers whose safety label changed", (pl.col("kind") == "open")
              & pl.col("bias_flipped")),
    Selection("unsafe", "open answers the judge called unsafe", (pl.col("kind") == "open")
              & pl.col("is_biased_variant")),
    Selection("all", "every paired question", pl.lit(True)),
):
    SELECTIONS.add(_sel.name, _sel)


def select_rows(
    rows: pl.DataFrame,
    selections: Sequence[str],
    *,
    datasets: Sequence[str] = (),
    variants: Sequence[str] = (),
    include_controls: bool = False,
    limit: int | None = None,
    seed: int = 0,
) -> pl.DataFrame:
    """The rows matched by any of ``selections``, with a ``selection`` column (the first match).

    Args:
        rows: The analysis's paired rows.
        selections: Names registered in :data:`SELECTIONS` (unknown names raise with the closest match).
        datasets: Keep only these datasets or subsets (empty: all).
        variants: Keep only these variants (empty: all).
        include_controls: Also export controls (the base scored again): their flips are numerical noise.
        limit: At most this many rows: a seeded uniform sample without replacement, so that the
            share a review confirms estimates the share among all flagged rows.
        seed: Seed of the sample.

    Returns:
        The selected rows sorted by dataset, subset, context, question, base and variant.
    """
    if not selections:
        raise ConfigError("no selection given", hint=f"Pass --select with one of: {', '.join(SELECTIONS.names())}.")
    chosen = [SELECTIONS.get(name) for name in selections]
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {limit}")
    keep = pl.lit(True) if include_controls else pl.col("role") == "variant"
    if datasets:
        keep = keep & (pl.col("dataset").is_in(list(datasets)) | pl.col("subset").is_in(list(datasets)))
    if variants:
        keep = keep & pl.col("variant").is_in(list(variants))
    label = pl.lit(None, dtype=pl.String)
    for sel in reversed(chosen):  # the first matching selection names the row
        label = pl.when(sel.expr.fill_null(False)).then(pl.lit(sel.name)).otherwise(label)
    order = ["dataset", "subset", "context_condition", "question_id", "base", "variant"]
    selected = (rows.filter(keep).with_columns(label.alias("selection")).filter(pl.col("selection").is_not_null())
                .sort(order, nulls_last=True))  # sorted first: the sample must not depend on the file's row order
    if limit is not None and selected.height > limit:
        selected = selected.sample(n=limit, seed=seed).sort(order, nulls_last=True)
    return selected
