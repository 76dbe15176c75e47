"""Safety tables of judged open answers, and open rows in the other tables, on hand-built rows.

The scenario (every expected number below is counted by hand from it): 12 open questions of
BiasLens-GenWhy, q0-q4 on the gender axis and q5-q11 on race.

* base ``m``: unsafe only on q9 (categories S10); q11 could not be judged (is_safe null);
* variant ``m-rtn-w4a16``: unsafe on q0 (S10), q1 (S1, S10), q2 (S2); q10 did not parse
  (judge_error); q12 is a generation error; q8 has no p_unsafe.

Pairs judged on both sides: q0-q9 (10): safe -> unsafe q0, q1, q2; unsafe -> safe q9.
"""

from __future__ import annotations

import math
import statistics

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from scipy.stats import binomtest, entropy
from statsmodels.stats.proportion import proportion_confint

from ray_bench.analysis.fields import open_fields
from ray_bench.analysis.flips import pair_rows
from ray_bench.analysis.metrics import TestOptions
from ray_bench.analysis.safety import safety_flip_table, safety_table
from ray_bench.analysis.study import StudyOptions, analyze_frames
from tests.analysis.conftest import frame, judged_frame, models, row

BASE, VAR = "m", "m-rtn-w4a16"
DS = "BiasLens-GenWhy"
P_BASE = [0.1, 0.2, 0.05, 0.1, 0.3, 0.0, 0.1, 0.2, 0.1, 0.9, 0.2, 0.7]
P_VAR = [0.8, 0.7, 0.6, 0.1, 0.2, 0.0, 0.1, 0.4, None, 0.3, None, 0.1]
CATS_VAR = {0: ["S10"], 1: ["S1", "S10"], 2: ["S2"]}
JUDGE = "llama-guard-3-8b"


def _open(model, i, *, is_safe, p, cats=None, judge_error=None, error=None):
    judged = {} if error else {"is_safe": is_safe, "p_unsafe": p, "judge_error": judge_error, "judge": JUDGE,
                               "unsafe_categories": cats if cats is not None else ([] if is_safe else None)}
    return row(model, f"q{i}", None, kind="open", dataset=DS, axis="gender" if i < 5 else "race",
               response=f"answer {i} of {model}", error=error, **judged)


def _scenario() -> list[dict]:
    rows = []
    for i in range(12):
        rows.append(_open(BASE, i, is_safe=None if i == 11 else i != 9, p=P_BASE[i],
                          cats=["S10"] if i == 9 else None))
        if i == 10:
            rows.append(_open(VAR, i, is_safe=None, p=None, judge_error="unparsable judge output: 'maybe'"))
        else:
            rows.append(_open(VAR, i, is_safe=i not in CATS_VAR, p=P_VAR[i], cats=CATS_VAR.get(i)))
    rows.append(_open(VAR, 12, is_safe=None, p=None, error="generation timed out"))
    return rows


def _wilson(k: int, n: int) -> tuple[float, float]:
    return proportion_confint(k, n, alpha=0.05, method="wilson")


def _one(table: pl.DataFrame, **key) -> dict:
    got = table.filter(*(pl.col(c) == v for c, v in key.items()))
    assert got.height == 1, (key, got)
    return got.row(0, named=True)


def test_open_fields_take_the_judges_probability_and_binary_entropy():
    got = open_fields(judged_frame(_scenario())).collect()
    base = {r["question_id"]: r for r in got.filter(pl.col("model") == BASE).iter_rows(named=True)}
    for i in (0, 2, 5, 9):
        p = P_BASE[i]
        hand = -sum(q * math.log2(q) for q in (p, 1 - p) if q > 0)  # H2 / log2(2)
        assert base[f"q{i}"]["entropy"] == pytest.approx(hand)
        assert base[f"q{i}"]["entropy"] == pytest.approx(entropy([p, 1 - p], base=2))
        assert base[f"q{i}"]["p_biased"] == p and base[f"q{i}"]["num_choices"] == 2
        assert base[f"q{i}"]["p_chosen"] == pytest.approx(max(p, 1 - p))
    assert base["q9"]["is_biased"] is True and base["q0"]["is_biased"] is False and base["q9"]["outcome"] == 1
    # q11 has a p_unsafe but no label: it is unjudged, and carries nothing a table could count.
    assert {base["q11"][c] for c in ("is_biased", "outcome", "p_biased", "entropy")} == {None}
    assert "q12" not in set(got["question_id"])  # generation errors are not answers


def test_open_fields_without_a_judgement_stay_null():
    rows = frame([row(BASE, "q0", None, kind="open", dataset=DS, response="a")])
    got = open_fields(rows).collect().row(0, named=True)
    assert {got[c] for c in ("is_biased", "p_biased", "entropy", "num_choices", "outcome")} == {None}


def test_safety_table_by_hand():
    table = safety_table(judged_frame(_scenario()))
    var = _one(table, model=VAR, axis="(all)")
    # q0-q11 answered (q12 errored); judged q0-q9 and q11; q10 did not parse.
    assert (var["n_open"], var["n_judged"], var["n_judge_errors"], var["n_unsafe"], var["n_hate"]) == (12, 11, 1, 3, 2)
    assert var["unsafe_rate"] == pytest.approx(3 / 11) and var["hate_rate"] == pytest.approx(2 / 11)
    assert (var["unsafe_rate_lo"], var["unsafe_rate_hi"]) == pytest.approx(_wilson(3, 11))
    assert (var["hate_rate_lo"], var["hate_rate_hi"]) == pytest.approx(_wilson(2, 11))
    # p_unsafe of the judged answers that have one: q0-q7, q9, q11.
    assert var["mean_p_unsafe"] == pytest.approx((0.8 + 0.7 + 0.6 + 0.1 + 0.2 + 0.0 + 0.1 + 0.4 + 0.3 + 0.1) / 10)
    assert var["judge"] == JUDGE and var["dataset"] == DS
    base = _one(table, model=BASE, axis="(all)")
    counts = ("n_open", "n_judged", "n_judge_errors", "n_unsafe", "n_hate")
    assert tuple(base[c] for c in counts) == (12, 11, 0, 1, 1)
    # q11's p_unsafe = 0.7 is left out with its missing label.
    assert base["mean_p_unsafe"] == pytest.approx(sum(P_BASE[:11]) / 11)
    race = _one(table, model=VAR, axis="race")  # q5-q11: q10 unparsed, none unsafe
    assert (race["n_open"], race["n_judged"], race["n_unsafe"], race["unsafe_rate"]) == (7, 6, 0, 0.0)
    assert (race["unsafe_rate_lo"], race["unsafe_rate_hi"]) == pytest.approx(_wilson(0, 6))
    gender = _one(table, model=VAR, axis="gender")
    assert (gender["n_judged"], gender["n_unsafe"], gender["n_hate"]) == (5, 3, 2)


def test_safety_table_with_nothing_judged_has_null_rates():
    rows = [_open(BASE, i, is_safe=None, p=None, judge_error="bad") for i in range(3)]
    got = _one(safety_table(judged_frame(rows)), model=BASE, axis="(all)")
    assert (got["n_open"], got["n_judged"], got["n_judge_errors"]) == (3, 0, 3)
    assert {got[c] for c in ("unsafe_rate", "unsafe_rate_lo", "unsafe_rate_hi", "hate_rate", "mean_p_unsafe")} == {None}


def _paired():
    return pair_rows(open_fields(judged_frame(_scenario())), models({VAR: BASE}))


def test_safety_flip_table_by_hand():
    table = safety_flip_table(_paired())
    got = _one(table, variant=VAR, axis="(all)")
    assert (got["n"], got["n_safe_to_unsafe"], got["n_unsafe_to_safe"]) == (10, 3, 1)  # q10, q11 left out
    assert got["unsafe_rate_base"] == pytest.approx(0.1) and got["unsafe_rate_variant"] == pytest.approx(0.3)
    assert got["safe_to_unsafe_rate"] == pytest.approx(0.3) and got["unsafe_to_safe_rate"] == pytest.approx(0.1)
    assert (got["safe_to_unsafe_rate_lo"], got["safe_to_unsafe_rate_hi"]) == pytest.approx(_wilson(3, 10))
    assert (got["unsafe_to_safe_rate_lo"], got["unsafe_to_safe_rate_hi"]) == pytest.approx(_wilson(1, 10))
    assert got["net_unsafe_change"] == pytest.approx((3 - 1) / 10)
    # variant - base p_unsafe on q0-q9 except q8 (no variant p): 0.7, 0.5, 0.55, 0, -0.1, 0, 0, 0.2, -0.6
    changes = [0.7, 0.5, 0.55, 0.0, -0.1, 0.0, 0.0, 0.2, -0.6]
    assert got["n_p_unsafe"] == 9
    assert got["mean_p_unsafe_change"] == pytest.approx(sum(changes) / 9)
    assert got["mean_abs_p_unsafe_change"] == pytest.approx(sum(abs(c) for c in changes) / 9)
    assert got["p_mcnemar"] == pytest.approx(binomtest(3, 4, 0.5).pvalue)
    gender, race = _one(table, axis="gender"), _one(table, axis="race")
    assert (gender["n"], gender["n_safe_to_unsafe"], gender["n_unsafe_to_safe"]) == (5, 3, 0)
    assert gender["p_mcnemar"] == pytest.approx(binomtest(3, 3, 0.5).pvalue)
    assert (race["n"], race["n_safe_to_unsafe"], race["n_unsafe_to_safe"]) == (5, 0, 1)
    assert race["p_mcnemar"] == pytest.approx(binomtest(0, 1, 0.5).pvalue)
    assert got["role"] == "variant" and got["q_label"] == "RTN W4A16"


def _closed_rows() -> list[dict]:
    labels = ["biased", "unbiased"]
    probs = {BASE: [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]],
             VAR: [[0.4, 0.6], [0.3, 0.7], [0.7, 0.3], [0.6, 0.4]]}
    return [row(m, f"c{i}", p, dataset="SocialStigmaQA", labels=labels, axis="race")
            for m, ps in probs.items() for i, p in enumerate(ps)]


OPTIONS = StudyOptions(tests=TestOptions(n_permutations=2000, n_bootstrap=200), min_group_questions=1)


def test_analyze_frames_end_to_end_with_a_judgement():
    tables = analyze_frames(judged_frame(_closed_rows() + _scenario()), models({VAR: BASE}), OPTIONS)
    assert {"safety", "safety_flips"} <= set(tables)
    flips = _one(tables["safety_flips"], dataset=DS, axis="(all)")
    assert flips["n"] == 10 and flips["method"] == "rtn" and flips["w_bits"] == 4  # quantization metadata joined
    assert tables["safety_flips"].columns[:9] == ["base", "variant", "role", "q_label", "method", "scheme", "w_bits",
                                                  "a_bits", "smoothquant"]
    safety = tables["safety"]
    assert _one(safety, model=VAR, axis="(all)")["role"] == "variant"
    assert _one(safety, model=BASE, axis="race")["base"] == BASE and safety.columns[:4] == ["model", "base", "role",
                                                                                           "q_label"]
    # flips of the open dataset: the same 10 judged pairs, safety-label flips q0, q1, q2, q9.
    f = _one(tables["flips"], dataset=DS, axis="(all)")
    assert (f["n"], f["n_flipped"], f["n_unb_to_b"], f["n_b_to_unb"]) == (10, 4, 3, 1)
    assert tables["rows"].filter(pl.col("dataset") == DS).height == 10


def test_open_rows_of_the_significance_table_by_hand():
    tables = analyze_frames(judged_frame(_closed_rows() + _scenario()), models({VAR: BASE}), OPTIONS)
    sig = tables["significance"].filter(pl.col("dataset") == DS)
    got = _one(sig, axis="(all)")
    assert got["metric"] == "unsafe_rate" and got["n"] == 10 and got["status"] == "tested"
    assert got["value_base"] == pytest.approx(0.1) and got["value_variant"] == pytest.approx(0.3)
    assert got["diff"] == pytest.approx(0.2) and got["direction"] == "more biased"
    d = [1, 1, 1, 0, 0, 0, 0, 0, 0, -1]  # is_biased(variant) - is_biased(base), q0-q9
    assert got["cohens_dz"] == pytest.approx(statistics.mean(d) / statistics.stdev(d))
    # the exact swap distribution on 4 discordant questions: P(|b - c| >= 2) = 10/16 (= McNemar's).
    assert got["p_value"] == pytest.approx(10 / 16, abs=0.04)
    assert _one(sig, axis="gender")["status"] == "untested: n < 10"


def test_open_rows_of_the_uncertainty_table_by_hand():
    tables = analyze_frames(judged_frame(_closed_rows() + _scenario()), models({VAR: BASE}), OPTIONS)
    unc = tables["uncertainty"].filter(pl.col("dataset") == DS)
    # H2 of the base's p_unsafe, q0-q9: 0.47 0.72 0.29 0.47 0.88 0 0.47 0.72 0.47 0.47
    # -> low q2, q5; medium q0, q3, q6, q8, q9; high q1, q4, q7. Flipped: q0, q1, q2, q9.
    got = {r["entropy_bin"]: r for r in unc.iter_rows(named=True)}
    assert list(unc["entropy_bin"]) == ["low", "medium", "high"] and set(unc["num_choices"]) == {2}
    assert [got[b]["n_rows"] for b in ("low", "medium", "high")] == [2, 5, 3]
    assert [got[b]["pct_questions"] for b in ("low", "medium", "high")] == pytest.approx([20.0, 50.0, 30.0])
    assert [got[b]["pct_flipped"] for b in ("low", "medium", "high")] == pytest.approx([50.0, 40.0, 100 / 3])
    assert [got[b]["pct_bias_flipped"] for b in ("low", "medium", "high")] == pytest.approx([50.0, 40.0, 100 / 3])


def test_a_run_without_a_judgement_has_no_safety_tables_and_the_closed_tables_only():
    """Open answers without a judgement change nothing: the tables equal those of the closed rows alone."""
    pairs = models({VAR: BASE})
    unjudged = [{k: v for k, v in r.items() if k not in ("is_safe", "p_unsafe", "unsafe_categories", "judge_error",
                                                          "judge")} for r in _scenario()]
    with_open = analyze_frames(frame(_closed_rows() + unjudged), pairs, OPTIONS)
    closed_only = analyze_frames(frame(_closed_rows()), pairs, OPTIONS)
    assert "safety" not in with_open and "safety_flips" not in with_open
    assert set(with_open) - set(closed_only) == {"text_changes"}
    for name, table in closed_only.items():
        # float sums may run in another order when the frame held more rows: equal up to rounding (default tolerance)
        assert_frame_equal(with_open[name], table, check_exact=False)


def test_judged_open_rows_leave_the_closed_rows_of_every_table_alone():
    pairs = models({VAR: BASE})
    judged = analyze_frames(judged_frame(_closed_rows() + _scenario()), pairs, OPTIONS)
    closed_only = analyze_frames(frame(_closed_rows()), pairs, OPTIONS)
    for name in ("flips", "uncertainty", "stereoset", "entropy_hist", "entropy_box", "entropy_diff_hist"):
        table = judged[name]
        if "dataset" in table.columns:
            table = table.filter(pl.col("dataset") != DS)
        assert_frame_equal(table, closed_only[name], check_exact=False)
    # BH pools over every dataset, so only the per-test columns must agree.
    keep = ["variant", "dataset", "axis", "metric", "n", "value_base", "value_variant", "diff", "p_value"]
    closed_sig = judged["significance"].filter(pl.col("dataset") != DS).select(keep)
    assert_frame_equal(closed_sig, closed_only["significance"].select(keep), check_exact=False)
