"""Figure functions one by one: the plotted frame, defaults, and empty input."""

from __future__ import annotations

import polars as pl
import pytest
from matplotlib.figure import Figure

from ray_bench.report.fig_groups import (
    default_group,
    default_group_dataset,
    default_ranking_label,
    extreme_groups,
    fig4c_rankings,
    fig5c_group_across_datasets,
    pooled_groups,
    question_flip_hist,
)
from ray_bench.report.fig_significance import (
    fig3a_significant_share,
    fig3b_effect_size,
    share_with_avg,
    counted_tests,
    weighted_flip_rate,
)
from ray_bench.report.fig_uncertainty import fig2a_entropy_hist, fig2b_entropy_box, pooled_hist
from ray_bench.report.figures import FIGURES
from ray_bench.report.style import NoFigureData, dataset_label, order_q_labels


def test_dataset_labels_pool_subsets_and_keep_bbq_contexts():
    frame = pl.DataFrame({"dataset": ["BBQ", "CEB-Recognition", "FMT10K"],
                          "subset": ["BBQ", "CEB-Recognition-S", "FMT10K-IM-S"],
                          "context_condition": ["ambig", None, None]})
    assert frame.select(dataset_label())["label"].to_list() == ["BBQ (ambig)", "CEB-Recognition", "FMT10K"]
    assert frame.select(dataset_label("subset"))["label"].to_list() == [
        "BBQ (ambig)", "CEB-Recognition-S", "FMT10K-IM-S"]


def test_q_label_order_follows_the_paper():
    assert order_q_labels(["AWQ W4A16", "Z", "RTN W4A16", None, "RTN W8A16"]) == [
        "RTN W8A16", "RTN W4A16", "AWQ W4A16", "Z"]


def test_pooled_histogram_is_a_density(tables):
    data = pooled_hist(tables["entropy_hist"], "flipped")
    widths = data["bin_hi"] - data["bin_lo"]
    sums = data.with_columns((pl.col("density") * widths).alias("mass")).group_by("label", "flipped").agg(
        pl.col("mass").sum())
    assert sums["mass"].to_list() == pytest.approx([1.0] * sums.height)
    assert set(data["label"]) == {"BBQ (ambig)", "BBQ (disambig)", "CEB-Recognition"}


def test_every_figure_function_returns_a_figure_and_its_frame(tables):
    for spec in FIGURES:
        fig, data = spec.build(*(tables[t] for t in spec.tables))
        assert isinstance(fig, Figure) and isinstance(data, pl.DataFrame) and data.height > 0, spec.name
        assert fig._suptitle is not None or any(ax.get_title() for ax in fig.axes), spec.name


def test_tests_exclude_controls_untested_and_all_axes_rows(tables):
    t = counted_tests(tables["significance"])
    assert set(t["role"]) == {"variant"} and set(t["status"]) == {"tested"} and "(all)" not in set(t["axis"])
    only_all = tables["significance"].filter(pl.col("axis") == "(all)")
    assert counted_tests(only_all).height == only_all.filter(
        (pl.col("role") == "variant") & (pl.col("status") == "tested")).height


def test_significant_share_and_avg_column(tables):
    t = counted_tests(tables["significance"])
    data = share_with_avg(t, "q_label")
    avg = data.filter(pl.col("label") == "Avg").sort("q_label")
    per = data.filter(pl.col("label") != "Avg").group_by("q_label").agg(pl.col("pct_significant").mean()).sort(
        "q_label")
    assert avg["pct_significant"].to_list() == pytest.approx(per["pct_significant"].to_list())
    _, plotted = fig3a_significant_share(tables["significance"])
    assert plotted["n_tests"].sum() == t.height


def test_weighted_flip_rate_weights_by_n():
    t = pl.DataFrame({"label": ["A", "A"], "significant_pooled": [False, False], "n": [10, 30],
                      "flip_rate": [0.5, 0.1]})
    assert weighted_flip_rate(t)["pct_flipped"][0] == pytest.approx(100 * (5 + 3) / 40)


def test_effect_size_without_significant_tests_is_no_data(tables):
    sig = tables["significance"].with_columns(pl.lit(False).alias("significant_pooled"))
    with pytest.raises(NoFigureData, match="no significant test"):
        fig3b_effect_size(sig)


def test_empty_inputs_raise_no_figure_data(tables):
    with pytest.raises(NoFigureData):
        fig2a_entropy_hist(tables["entropy_hist"].clear())
    with pytest.raises(NoFigureData):
        fig2b_entropy_box(tables["entropy_box"].clear())
    untested = tables["significance"].with_columns(pl.lit("undefined").alias("status"))
    with pytest.raises(NoFigureData):
        fig3a_significant_share(untested)
    with pytest.raises(NoFigureData):
        fig5c_group_across_datasets(tables["groups"], group="nobody")


def test_ranking_defaults_and_selection(tables):
    assert default_ranking_label(["RTN W8A16", "GPTQ W4A16", "RTN W4A16 + SQ"]) == "RTN W4A16 + SQ"
    assert default_ranking_label(["AWQ W4A16", "RTN W8A16"]) == "AWQ W4A16"
    assert default_ranking_label(["RTN W8A16", "RTN W4A16"]) == "RTN W4A16"
    _, data = fig4c_rankings(tables["rankings"])
    assert set(data["q_label"]) == {"RTN W4A16"} and data.height == 5 * 2
    _, data = fig4c_rankings(tables["rankings"], q_label="RTN W8A16")
    assert set(data["q_label"]) == {"RTN W8A16"}


def test_group_defaults_and_extremes(tables):
    pooled = pooled_groups(tables["groups"])
    assert default_group(pooled) == "male"
    assert default_group(pooled.filter(pl.col("group") != "male")) == "female"
    assert default_group_dataset(["CEB-Recognition", "BBQ (disambig)", "BBQ (ambig)"]) == "BBQ (ambig)"
    assert default_group_dataset(["FMT10K", "CEB-Recognition"]) == "CEB-Recognition"
    data = extreme_groups(tables["groups"])
    assert set(data["label"]) == {"BBQ (ambig)"} and set(data["level"]) == {"all", "base", "variant"}
    all_level = pooled.filter((pl.col("label") == "BBQ (ambig)") & (pl.col("level") == "all"))
    picked = data.filter(pl.col("level") == "all")["diff_unb_to_b"]
    assert picked.min() == all_level["diff_unb_to_b"].min() and picked.max() == all_level["diff_unb_to_b"].max()


def test_pooled_groups_weight_by_rows():
    g = pl.DataFrame({"level": ["all", "all"], "level_model": [None, None], "dataset": ["F", "F"],
                      "subset": ["F-S", "F-T"], "context_condition": [None, None], "group": ["male", "male"],
                      "n_questions": [10, 30], "n_rows": [40, 120], "pct_flipped": [10.0, 20.0],
                      "pct_bias_flipped": [8.0, 4.0], "pct_unb_to_b": [6.0, 2.0], "pct_b_to_unb": [2.0, 2.0],
                      "diff_unb_to_b": [4.0, 0.0]}, schema_overrides={"level_model": pl.String,
                                                                       "context_condition": pl.String})
    row = pooled_groups(g).row(0, named=True)
    assert row["n_rows"] == 160 and row["pct_unb_to_b"] == pytest.approx(3.0)
    assert row["diff_unb_to_b"] == pytest.approx(1.0)


def test_question_flip_hist_discrete_and_binned():
    few = pl.DataFrame({"dataset": ["D"] * 4, "subset": ["D"] * 4, "context_condition": [None] * 4,
                        "flip_rate": [0.0, 0.0, 0.25, 1.0]}, schema_overrides={"context_condition": pl.String})
    data = question_flip_hist(few)
    assert data["center"].to_list() == [0.0, 25.0, 100.0] and data["pct_questions"].sum() == pytest.approx(100)
    many = few.clear().vstack(pl.DataFrame({"dataset": ["D"] * 101, "subset": ["D"] * 101,
                                            "context_condition": [None] * 101,
                                            "flip_rate": [i / 100 for i in range(101)]},
                                           schema_overrides={"context_condition": pl.String}))
    binned = question_flip_hist(many)
    assert binned.height == 20 and binned["n_questions"].sum() == 101
