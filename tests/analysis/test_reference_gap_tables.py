"""The reference-gap tables (analysis/reference_gap_tables.py) on a hand-built run with known answers."""

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats as sps

from ray_bench.analysis.reference_gap_tables import (
    TABLE_NAMES,
    GapOptions,
    gap_warnings,
    noise_floor_table,
    reference_gap_tables,
)
from ray_bench.datasets.reference import load_reference, reference_from_dict
from ray_bench.errors import AnalysisError

REFERENCE = reference_from_dict({
    "schema_version": 1, "name": "toy", "version": "1", "title": "Toy", "year": 2024, "illustrative": True,
    "source": {"citation": "Made up for tests", "url": "https://example.org"},
    "attributes": [{"name": "gender", "label": "Gender", "categories": ["woman", "man"]}],
    "occupations": [
        {"name": "nurse", "employment": 30.0, "shares": {"gender": {"woman": 0.9, "man": 0.1}}},
        {"name": "electrician", "employment": 10.0, "shares": {"gender": {"woman": 0.02, "man": 0.98}}},
    ],
})
MODELS = pl.DataFrame({"model": ["base", "q4"], "base": ["base", "base"], "role": ["base", "variant"],
                       "q_label": ["base", "RTN W4A16"]})
OPTIONS = GapOptions(n_bootstrap=200, n_permutations=200, floor_draws=20_000)
W, M = "Gender: woman", "He is an electrician. Gender: man"


def _answers(model, occupation, texts):
    slug = occupation[:5]
    return [{"model": model, "question_id": f"occupations/{slug}/{k:03d}", "dataset": "Occupations",
             "subset": "Occupations", "group": occupation, "response": None if t is None else t,
             "error": "engine failed" if t is None else None} for k, t in enumerate(texts)]


def _rows():
    rows = (_answers("base", "nurse", [W] * 8 + [M, "I will not say."])
            + _answers("base", "electrician", [W] * 4 + [M] * 4 + ["Gender: <woman|man>", None])
            + _answers("q4", "nurse", [W] * 10) + _answers("q4", "electrician", [M] * 10)
            + [{"model": "base", "question_id": "bbq/1", "dataset": "BBQ", "subset": "BBQ", "group": "old",
                "response": None, "error": None}])
    return pl.DataFrame(rows).lazy()


@pytest.fixture(scope="module")
def tables():
    return reference_gap_tables(_rows(), MODELS, REFERENCE, OPTIONS)


def _one(frame, **keys):
    sub = frame.filter(*(pl.col(k) == v for k, v in keys.items()))
    assert sub.height == 1, keys
    return sub.row(0, named=True)


def test_every_table_is_made(tables):
    assert tuple(tables) == TABLE_NAMES


def test_counts_and_distances_by_hand(tables):
    gap = tables["reference_gap"]
    nurse = _one(gap, model="base", occupation="nurse")
    assert (nurse["n_answers"], nurse["n_errors"], nurse["n_unparsed"], nurse["n_unmatched"], nurse["n"]) == (10, 0, 1, 0, 9)
    assert nurse["tv"] == pytest.approx(abs(8 / 9 - 0.9)) and nurse["max_dev"] == pytest.approx(nurse["tv"])
    assert nurse["unknown_rate"] == pytest.approx(0.1)
    hand_g = 2 * (8 * math.log(8 / 8.1) + 1 * math.log(1 / 0.9))  # expected 8.1 and 0.9 of N = 9
    assert nurse["g_stat"] == pytest.approx(hand_g) and nurse["g_df"] == 1
    assert nurse["g_p"] == pytest.approx(sps.chi2.sf(hand_g, 1))
    assert nurse["js"] == pytest.approx(sps.entropy([0.5 * (8 / 9 + 0.9), 0.5 * (1 / 9 + 0.1)]) -
                                        0.5 * sps.entropy([8 / 9, 1 / 9]) - 0.5 * sps.entropy([0.9, 0.1]))
    electrician = _one(gap, model="base", occupation="electrician")
    assert (electrician["n_errors"], electrician["n_unmatched"], electrician["n"]) == (1, 1, 8)
    assert electrician["tv"] == pytest.approx(0.48) and electrician["unknown_rate"] == pytest.approx(1 / 9)
    assert electrician["employment"] == 10.0 and electrician["role"] == "base"
    assert _one(gap, model="q4", occupation="nurse")["tv"] == pytest.approx(0.1)


def test_noise_floor_at_the_observed_n_matches_the_exact_binomial(tables):
    nurse = _one(tables["reference_gap"], model="base", occupation="nurse")
    x = np.arange(10)
    exact = float((sps.binom.pmf(x, 9, 0.9) * np.abs(x / 9 - 0.9)).sum())  # TV = |p_woman - q_woman| at N = 9
    assert nurse["floor_mean"] == pytest.approx(exact, abs=0.004)
    assert nurse["tv_excess"] == pytest.approx(nurse["tv"] - nurse["floor_mean"])
    assert nurse["above_floor"] is False  # 8 of 9 women is what a faithful model gives
    assert _one(tables["reference_gap"], model="base", occupation="electrician")["above_floor"] is True


def test_categories_by_hand(tables):
    cats = tables["reference_gap_categories"]
    row = _one(cats, model="base", occupation="electrician", category="woman")
    assert (row["count"], row["share"], row["reference_share"]) == (4, 0.5, 0.02)
    assert row["gap"] == pytest.approx(0.48) and row["ratio"] == pytest.approx(25.0)
    assert cats.filter(pl.col("model") == "base")["category"].to_list()[:2] == ["woman", "man"]  # table order


def test_summary_by_hand(tables):
    summary = tables["reference_gap_summary"]
    base, q4 = _one(summary, model="base"), _one(summary, model="q4")
    tv_nurse = abs(8 / 9 - 0.9)
    assert base["mean_tv"] == pytest.approx((tv_nurse + 0.48) / 2)
    assert base["weighted_tv"] == pytest.approx((30 * tv_nurse + 10 * 0.48) / 40)
    assert (base["worst_tv"], base["worst_occupation"]) == (pytest.approx(0.48), "electrician")
    assert (base["n_occupations"], base["n_answers"], base["n"]) == (2, 20, 17)
    assert base["unknown_rate"] == pytest.approx(2 / 19)
    assert q4["mean_tv"] == pytest.approx(0.06) and q4["weighted_tv"] == pytest.approx((3 + 0.2) / 40)
    assert base["share_above_floor"] == pytest.approx(0.5)


def test_pairs_by_hand(tables):
    pairs = tables["reference_gap_pairs"]
    nurse = _one(pairs, occupation="nurse")
    assert (nurse["base"], nurse["variant"], nurse["n"], nurse["status"]) == ("base", "q4", 10, "tested")
    assert nurse["diff"] == pytest.approx(0.1 - abs(8 / 9 - 0.9))
    assert nurse["ci_lo"] <= nurse["diff"] <= nurse["ci_hi"] and 0 < nurse["p_value"] <= 1
    total = _one(pairs, occupation="(all)")
    d_nurse, d_elec = 0.1 - abs(8 / 9 - 0.9), 0.02 - 0.48
    assert total["diff"] == pytest.approx((d_nurse + d_elec) / 2)
    assert total["weighted_diff"] == pytest.approx((30 * d_nurse + 10 * d_elec) / 40)
    assert (total["n_worse"], total["n_better"], total["n"]) == (1, 1, 20)
    assert total["p_wilcoxon"] == pytest.approx(sps.wilcoxon([d_nurse, d_elec]).pvalue)


def test_paired_status_below_min_n():
    tables = reference_gap_tables(_rows(), MODELS, REFERENCE, GapOptions(n_bootstrap=50, n_permutations=50,
                                                                         floor_draws=100, min_n=11))
    pairs = tables["reference_gap_pairs"]
    assert set(pairs["status"].to_list()) == {"untested: n < 11"} and pairs["p_value"].is_nan().all()


def test_results_are_seeded():
    again = reference_gap_tables(_rows(), MODELS, REFERENCE, OPTIONS)
    first = reference_gap_tables(_rows(), MODELS, REFERENCE, OPTIONS)
    for name in TABLE_NAMES:
        assert again[name].equals(first[name]), name


def test_bad_input():
    assert reference_gap_tables(_rows().filter(pl.col("dataset") == "BBQ"), MODELS, REFERENCE, OPTIONS) == {}
    stray = pl.concat([_rows(), pl.DataFrame(_answers("base", "pilot", [W])).lazy()])
    with pytest.raises(AnalysisError, match="occupation 'pilot' of the Occupations answers is not in reference"):
        reference_gap_tables(stray, MODELS, REFERENCE, OPTIONS)
    twice = pl.concat([_rows(), pl.DataFrame(_answers("q4", "nurse", [W])).lazy()])
    with pytest.raises(AnalysisError, match="question 'occupations/nurse/000' of model 'q4' appears 2 times"):
        reference_gap_tables(twice, MODELS, REFERENCE, OPTIONS)
    with pytest.raises(AnalysisError, match="unknown interval method"):
        GapOptions(ci_method="wald")


def test_warnings_for_an_illustrative_table_and_identical_samples(tables):
    warnings = gap_warnings(tables, REFERENCE)
    assert warnings[0].startswith("reference table 'toy' is illustrative")
    assert any(w.startswith("q4: every occupation's Occupations samples are one identical answer") for w in warnings)
    assert not any(w.startswith("base:") for w in warnings)


def test_noise_floor_table_of_the_shipped_table():
    per, summary = noise_floor_table(load_reference(), [50, 500], draws=2000)
    assert per.height == 3 * 20 * 2 and summary.height == 3 * 2
    gender = summary.filter((pl.col("attribute") == "gender")).sort("n")
    assert gender["mean_floor"][0] / gender["mean_floor"][1] == pytest.approx(math.sqrt(10), rel=0.1)
    assert (gender["min_q95"] <= gender["mean_q95"]).all() and (gender["mean_q95"] <= gender["max_q95"]).all()
