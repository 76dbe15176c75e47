"""Flip analysis on hand-built tables with answers worked out by hand."""

import math
import random

import polars as pl
import pytest

from ray_bench.analysis import flip_table, normalized_entropy
from ray_bench.errors import AnalysisError


def _row(model, qid, probs, pred, *, subset="S1", kind="closed", error=None):
    return {
        "question_id": qid, "model": model, "dataset": "Fam", "subset": subset, "axis": "a",
        "kind": kind, "choice_probs": probs, "prediction": pred, "error": error,
    }


def _table():
    rows = [
        # q1: base certain (H~=0, low), variant flips.
        _row("base", "q1", [1.0, 0.0], 0), _row("quant", "q1", [0.2, 0.8], 1),
        # q2: base uniform over 2 (H~=1, high), no flip.
        _row("base", "q2", [0.5, 0.5], 0), _row("quant", "q2", [0.6, 0.4], 0),
        # q3: H2([.8,.1,.1]) = 0.92193 bits, / log2(3) = 0.58167 -> medium; flips.
        _row("base", "q3", [0.8, 0.1, 0.1], 0), _row("quant", "q3", [0.1, 0.1, 0.8], 2),
        # q4: H2([.9,.05,.05]) = 0.56900, / log2(3) = 0.35900 -> medium; no flip.
        _row("base", "q4", [0.9, 0.05, 0.05], 0), _row("quant", "q4", [0.9, 0.05, 0.05], 0),
        # q5: variant errored -> excluded; q6: open -> excluded; q7 only in base -> excluded.
        _row("base", "q5", [0.3, 0.7], 1), _row("quant", "q5", None, None, error="boom"),
        _row("base", "q6", None, None, kind="open"), _row("quant", "q6", None, None, kind="open"),
        _row("base", "q7", [0.3, 0.7], 1),
        # Another subset: one question, flipped, base H~ = 1 (high).
        _row("base", "r1", [0.5, 0.5], 0, subset="S2"), _row("quant", "r1", [0.4, 0.6], 1, subset="S2"),
    ]
    return pl.DataFrame(rows, schema_overrides={"choice_probs": pl.List(pl.Float64), "prediction": pl.Int32})


def test_flip_table_matches_hand_computation():
    out = flip_table(_table(), base="base")
    s1 = out.filter(pl.col("subset") == "S1").row(0, named=True)
    assert (s1["model"], s1["n_questions"], s1["n_flipped"]) == ("quant", 4, 2)
    assert s1["flip_rate"] == pytest.approx(0.5)
    assert s1["low_share"] == pytest.approx(0.25) and s1["low_flip_rate"] == pytest.approx(1.0)
    assert s1["medium_share"] == pytest.approx(0.5) and s1["medium_flip_rate"] == pytest.approx(0.5)
    assert s1["high_share"] == pytest.approx(0.25) and s1["high_flip_rate"] == pytest.approx(0.0)
    s2 = out.filter(pl.col("subset") == "S2").row(0, named=True)
    assert (s2["n_questions"], s2["n_flipped"], s2["high_share"]) == (1, 1, 1.0)
    assert s2["low_flip_rate"] is None and s2["low_share"] == 0.0


def test_bin_edges_are_inclusive_upper():
    # H~ exactly 1/3 and 2/3 fall in low and medium: p = 1/4 over 4 choices gives 1, so build
    # edges from 2-choice entropies: H2(p) = 1/3 and 2/3 solved numerically.
    def p_for(target):
        lo, hi = 1e-12, 0.5
        for _ in range(200):
            mid = (lo + hi) / 2
            h = -(mid * math.log2(mid) + (1 - mid) * math.log2(1 - mid))
            lo, hi = (mid, hi) if h < target else (lo, mid)
        return lo
    rows = []
    for i, target in enumerate([1 / 3 - 1e-9, 1 / 3 + 1e-6, 2 / 3 - 1e-9, 2 / 3 + 1e-6]):
        p = p_for(target)
        rows += [_row("base", f"e{i}", [p, 1 - p], 1), _row("quant", f"e{i}", [p, 1 - p], 1)]
    out = flip_table(pl.DataFrame(rows, schema_overrides={"prediction": pl.Int32}), base="base").row(0, named=True)
    assert out["low_share"] == pytest.approx(0.25)
    assert out["medium_share"] == pytest.approx(0.5)
    assert out["high_share"] == pytest.approx(0.25)


def test_normalized_entropy_matches_naive():
    rng = random.Random(0)
    vecs = []
    for _ in range(50):
        k = rng.randint(2, 5)
        w = [rng.random() ** 3 for _ in range(k)]
        if rng.random() < 0.2:
            w[0] = 0.0
        vecs.append([x / sum(w) for x in w])
    got = pl.DataFrame({"p": vecs}).select(normalized_entropy(pl.col("p"))).to_series().to_list()
    for v, h in zip(vecs, got):
        naive = -sum(x * math.log2(x) for x in v if x > 0) / math.log2(len(v))
        assert h == pytest.approx(naive, abs=1e-12)


def test_unknown_base_lists_models():
    with pytest.raises(AnalysisError, match="base model 'nope'") as err:
        flip_table(_table(), base="nope")
    assert "base" in err.value.hint and "quant" in err.value.hint
