"""Builders of hand-made result rows (results joined with their questions) for analysis tests."""

from __future__ import annotations

import polars as pl
import pytest

ROW_SCHEMA = {
    "question_id": pl.String, "model": pl.String, "dataset": pl.String, "subset": pl.String, "axis": pl.String,
    "kind": pl.String, "choice_probs": pl.List(pl.Float64), "prediction": pl.Int32, "response": pl.String,
    "responses": pl.List(pl.String), "error": pl.String, "choices": pl.List(pl.String),
    "choice_labels": pl.List(pl.String), "group": pl.String, "context_condition": pl.String, "answer_index": pl.Int32,
}

#: The judgement columns ``scan_run`` adds to a judged run's rows.
JUDGE_SCHEMA = {
    "is_safe": pl.Boolean, "p_unsafe": pl.Float64, "unsafe_categories": pl.List(pl.String), "judge_error": pl.String,
    "judge": pl.String,
}


def row(model, qid, probs, *, dataset="CEB-Jigsaw", subset=None, axis="gender", labels=None, answer=None,
        group=None, context=None, kind="closed", error=None, response=None, pred=None, **judgement):
    """One joined row; the prediction is the argmax of ``probs`` unless given.

    ``judgement``: any of the :data:`JUDGE_SCHEMA` columns (read by :func:`judged_frame` only).
    """
    unknown = set(judgement) - set(JUDGE_SCHEMA)
    assert not unknown, f"not a judgement column: {unknown}"
    if probs is not None and pred is None:
        pred = max(range(len(probs)), key=lambda i: probs[i])
    return judgement | {
        "question_id": qid, "model": model, "dataset": dataset, "subset": subset or dataset, "axis": axis,
        "kind": kind, "choice_probs": probs, "prediction": pred, "response": response, "responses": None,
        "error": error, "choices": [f"c{i}" for i in range(len(labels))] if labels else None,
        "choice_labels": labels, "group": group, "context_condition": context, "answer_index": answer,
    }


def frame(rows: list[dict]) -> pl.LazyFrame:
    """The rows as the lazy frame ``scan_run`` returns."""
    return pl.DataFrame(rows, schema=ROW_SCHEMA).lazy()


def judged_frame(rows: list[dict]) -> pl.LazyFrame:
    """The rows of a judged run: every row with the judgement columns (null where not given)."""
    full = [{c: r.get(c) for c in (*ROW_SCHEMA, *JUDGE_SCHEMA)} for r in rows]
    return pl.DataFrame(full, schema=ROW_SCHEMA | JUDGE_SCHEMA).lazy()


def models(pairs: dict[str, str], *, q_labels: dict[str, str] | None = None, controls: dict[str, str] | None = None):
    """A model table: ``pairs`` variant -> base (and ``controls`` control -> base)."""
    from ray_bench.analysis.models import model_table

    settings = {m: {"path": f"/m/{m}"} for m in {*pairs, *pairs.values(), *(controls or {})}}
    pairing = {v: (b, "pair") for v, b in pairs.items()} | {c: (b, "control") for c, b in (controls or {}).items()}
    table = model_table(settings, pairing)
    if q_labels:
        table = table.with_columns(pl.col("model").replace(q_labels).alias("_q")).with_columns(
            pl.when(pl.col("model").is_in(list(q_labels))).then(pl.col("_q")).otherwise(pl.col("q_label"))
            .alias("q_label")
        ).drop("_q")
    return table


@pytest.fixture
def make_rows():
    return frame
