"""Group asymmetry and rankings on hand-built rows (notes 4.7, 4.8)."""

import numpy as np
import polars as pl
import pytest

from ray_bench.analysis.fields import closed_fields
from ray_bench.analysis.flips import pair_rows
from ray_bench.analysis.groups import dense_rank_overlap, group_asymmetry, ranking_table
from ray_bench.analysis.metrics import TestOptions
from tests.analysis.conftest import frame, models, row

L2 = ["correct", "incorrect"]
RIGHT, WRONG = [0.8, 0.2], [0.2, 0.8]


def _paired(rows, pairs):
    return pair_rows(closed_fields(frame(rows)), models(pairs)).collect().lazy()


def test_asymmetry_levels_and_filters_by_hand():
    labels = ["biased", "unbiased", "uncertain"]
    unknown, biased = [0.1, 0.1, 0.8], [0.8, 0.1, 0.1]
    rows = []
    # 4 BBQ questions of group "male" (BBQ also writes "M"); the base answers "unknown" except on q1.
    # v1 turns q0 biased (U->B); v2 turns q1 unknown (B->U).
    for i in range(4):
        base = biased if i == 1 else unknown
        spec = {"dataset": "BBQ", "labels": labels, "answer": 2, "group": "M" if i % 2 else "male", "context": "ambig"}
        rows.append(row("base", f"q{i}", base, **spec))
        rows.append(row("v1", f"q{i}", biased if i == 0 else base, **spec))
        rows.append(row("v2", f"q{i}", unknown if i == 1 else base, **spec))
    # a comma-separated group is left out
    rows += [row(m, "c0", unknown, dataset="BBQ", labels=labels, answer=2, group="a, b", context="ambig")
             for m in ("base", "v1")]
    table = group_asymmetry(_paired(rows, {"v1": "base", "v2": "base"}), min_questions=2)
    assert set(table["group"]) == {"male"}
    everything = table.filter(pl.col("level") == "all").row(0, named=True)
    # 8 rows (4 questions x 2 variants), 2 flips: one U->B, one B->U.
    assert (everything["n_questions"], everything["n_rows"]) == (4, 8)
    assert (everything["pct_flipped"], everything["pct_unb_to_b"], everything["pct_b_to_unb"]) == (25.0, 12.5, 12.5)
    per_variant = {r["level_model"]: r for r in table.filter(pl.col("level") == "variant").iter_rows(named=True)}
    assert per_variant["v1"]["diff_unb_to_b"] == 25.0 and per_variant["v2"]["diff_unb_to_b"] == -25.0
    assert table.filter(pl.col("level") == "base")["level_model"].to_list() == ["base"]


def test_asymmetry_directions_on_a_correctness_dataset():
    rows = []
    for i in range(10):
        rows.append(row("base", f"q{i}", WRONG if i < 2 else RIGHT, labels=L2, answer=0, group="g1"))
        # q0, q1: wrong -> right (B->U); q2..q5: right -> wrong (U->B)
        rows.append(row("v", f"q{i}", RIGHT if i < 2 else (WRONG if i < 6 else RIGHT), labels=L2, answer=0, group="g1"))
    got = group_asymmetry(_paired(rows, {"v": "base"}), min_questions=10).filter(pl.col("level") == "all").row(0, named=True)
    assert (got["pct_unb_to_b"], got["pct_b_to_unb"], got["diff_unb_to_b"]) == (40.0, 20.0, 20.0)
    assert got["pct_bias_flipped"] == 60.0
    assert group_asymmetry(_paired(rows, {"v": "base"}), min_questions=11).height == 0


def test_dense_rank_with_ci_overlap_ties_by_hand():
    values = np.array([0.30, 0.10, 0.12, 0.50, np.nan])
    lo = np.array([0.28, 0.05, 0.11, 0.45, np.nan])
    hi = np.array([0.32, 0.11, 0.20, 0.55, np.nan])
    # sorted: 0.10 (rank 1), 0.12 (0.10 is not in [0.11, 0.20], 0.12 is not in [0.05, 0.11] -> rank 2),
    # 0.30 (rank 3), 0.50 (rank 4); NaN unranked (0).
    assert dense_rank_overlap(values, lo, hi).tolist() == [3, 1, 2, 4, 0]
    hi[1] = 0.13  # now 0.12 lies within 0.10's CI -> tie
    assert dense_rank_overlap(values, lo, hi).tolist() == [2, 1, 1, 3, 0]


def test_ranking_table_ranks_bases_and_variants():
    rows = []
    # base A is wrong on 2/20, base B on 15/20; their variants swap order (A's on 18/20, B's on 1/20).
    for i in range(20):
        for model, wrong in (("A", i < 2), ("B", i < 15), ("A-rtn-w4a16", i < 18), ("B-rtn-w4a16", i < 1)):
            rows.append(row(model, f"q{i}", WRONG if wrong else RIGHT, labels=L2, answer=0))
    table = ranking_table(_paired(rows, {"A-rtn-w4a16": "A", "B-rtn-w4a16": "B"}), TestOptions(n_bootstrap=500))
    got = {r["base"]: r for r in table.iter_rows(named=True)}
    assert got["A"]["value_base"] == pytest.approx(0.1) and got["A"]["rank_base"] == 1 and got["B"]["rank_base"] == 2
    assert got["A"]["rank_variant"] == 2 and got["B"]["rank_variant"] == 1 and got["A"]["rank_change"] == 1
    assert got["A"]["lo_base"] <= 0.1 <= got["A"]["hi_base"]
