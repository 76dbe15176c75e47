"""Flips, uncertainty and per-question tables on hand-built rows with answers worked out by hand."""

import polars as pl
import pytest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from ray_bench.analysis.fields import closed_fields
from ray_bench.analysis.flips import flip_table, pair_rows, question_flip_table, uncertainty_table
from tests.analysis.conftest import frame, models, row

L2 = ["correct", "incorrect"]
L3 = ["unbiased", "biased", "uncertain"]


def _paired(rows, pairs=None, controls=None):
    table = models(pairs or {"quant": "base"}, controls=controls)
    return pair_rows(closed_fields(frame(rows)), table).collect().lazy()


def _rows():
    return [
        # q1: base certain (H~=0, low) and right; variant flips to the wrong answer (unbiased -> biased).
        row("base", "q1", [1.0, 0.0], labels=L2, answer=0), row("quant", "q1", [0.2, 0.8], labels=L2, answer=0),
        # q2: base uniform (H~=1, high), both pick choice 0: no flip.
        row("base", "q2", [0.5, 0.5], labels=L2, answer=1), row("quant", "q2", [0.6, 0.4], labels=L2, answer=1),
        # q3: base wrong at H~=H2(.1,.9)=0.468996 (medium), variant right: biased -> unbiased.
        row("base", "q3", [0.1, 0.9], labels=L2, answer=0), row("quant", "q3", [0.9, 0.1], labels=L2, answer=0),
        # q4: only the variant errored; q5 exists only for the base: both excluded.
        row("base", "q4", [0.3, 0.7], labels=L2, answer=0), row("quant", "q4", None, labels=L2, answer=0, error="x"),
        row("base", "q5", [0.3, 0.7], labels=L2, answer=0),
        # another axis: same direction as q1.
        row("base", "r1", [0.7, 0.3], labels=L2, answer=0, axis="race"),
        row("quant", "r1", [0.4, 0.6], labels=L2, answer=0, axis="race"),
    ]


def test_flip_table_by_hand_with_wilson_intervals():
    table = flip_table(_paired(_rows()))
    gender = table.filter(pl.col("axis") == "gender").row(0, named=True)
    assert (gender["n"], gender["n_flipped"], gender["n_bias_flipped"]) == (3, 2, 2)
    assert (gender["n_unb_to_b"], gender["n_b_to_unb"]) == (1, 1)
    lo, hi = proportion_confint(2, 3, alpha=0.05, method="wilson")
    assert gender["flip_rate"] == pytest.approx(2 / 3)
    assert (gender["flip_rate_lo"], gender["flip_rate_hi"]) == (pytest.approx(lo), pytest.approx(hi))
    everything = table.filter(pl.col("axis") == "(all)").row(0, named=True)
    assert (everything["n"], everything["n_flipped"], everything["n_unb_to_b"]) == (4, 3, 2)
    assert everything["unb_to_b_rate"] == pytest.approx(0.5)
    # H~ of q1..q3 and r1 base: 0, 1, H2(.1,.9)=0.468996, H2(.7,.3)=0.881291.
    assert everything["mean_entropy_base"] == pytest.approx((0 + 1 + 0.468996 + 0.881291) / 4, abs=1e-6)
    assert everything["control_flip_rate"] is None and everything["p_vs_control"] is None


def test_uncertainty_table_by_hand():
    table = uncertainty_table(_paired(_rows()))
    got = {r["entropy_bin"]: r for r in table.iter_rows(named=True)}
    # bins of the base: q1 low (flip), q2 high (no flip), q3 medium (flip), r1 high (flip).
    assert got["low"]["pct_questions"] == pytest.approx(25.0) and got["low"]["pct_flipped"] == 100.0
    assert got["high"]["n_rows"] == 2 and got["high"]["pct_flipped"] == pytest.approx(50.0)
    assert got["medium"]["pct_bias_flipped"] == 100.0 and got["medium"]["num_choices"] == 2
    assert list(table["entropy_bin"]) == ["low", "medium", "high"]


def test_question_flip_rate_over_variants():
    rows = _rows() + [row("q8", r["question_id"], [0.9, 0.1], labels=L2, answer=0, axis=r["axis"])
                      for r in _rows() if r["model"] == "base"]
    table = question_flip_table(_paired(rows, pairs={"quant": "base", "q8": "base"}))
    got = dict(zip(table["question_id"], table["flip_rate"]))
    # q8 always predicts choice 0: flips q3 and... base picks 0 on q1, q2, r1 and 1 on q3, q4, q5.
    assert got["q1"] == pytest.approx(0.5) and got["q2"] == 0.0 and got["q3"] == 1.0 and got["r1"] == 0.5
    assert dict(zip(table["question_id"], table["n_variants"]))["q3"] == 2


def test_open_rows_flip_on_safety_labels():
    rows = frame([
        row("base", "o1", None, kind="open", dataset="BiasLens-GenWhy", response="a"),
        row("quant", "o1", None, kind="open", dataset="BiasLens-GenWhy", response="b"),
        row("base", "o2", None, kind="open", dataset="BiasLens-GenWhy", response="a"),
        row("quant", "o2", None, kind="open", dataset="BiasLens-GenWhy", response="a"),
    ]).with_columns(pl.Series("is_safe", [True, False, True, True]))
    from ray_bench.analysis.fields import open_fields

    paired = pair_rows(open_fields(rows), models({"quant": "base"})).collect()
    got = dict(zip(paired["question_id"], paired["direction"]))
    assert got == {"o1": "unbiased_to_biased", "o2": None}
    assert dict(zip(paired["question_id"], paired["flipped"])) == {"o1": True, "o2": False}


def test_control_columns_and_mcnemar_against_statsmodels():
    rows = []
    # 12 questions: variant flips on q0..q7, the control (same base re-scored) only on q0 and q8.
    for i in range(12):
        rows.append(row("base", f"q{i}", [0.8, 0.2], labels=L2, answer=0))
        rows.append(row("quant", f"q{i}", [0.3, 0.7] if i < 8 else [0.8, 0.2], labels=L2, answer=0))
        rows.append(row("ctrl", f"q{i}", [0.3, 0.7] if i in (0, 8) else [0.8, 0.2], labels=L2, answer=0))
    table = flip_table(_paired(rows, controls={"ctrl": "base"}))
    variant = table.filter((pl.col("variant") == "quant") & (pl.col("axis") == "(all)")).row(0, named=True)
    assert variant["control_flip_rate"] == pytest.approx(2 / 12)
    # discordant: variant-only flips q1..q7 (7), control-only q8 (1).
    expected = mcnemar([[1, 7], [1, 3]], exact=True).pvalue
    assert variant["p_vs_control"] == pytest.approx(expected)
    control = table.filter((pl.col("variant") == "ctrl") & (pl.col("axis") == "(all)")).row(0, named=True)
    assert control["role"] == "control" and control["flip_rate"] == pytest.approx(2 / 12)
