"""The report's housing section, from a hand-built housing-only analysis (two models, no closed questions)."""

from __future__ import annotations

import json

import polars as pl

from ray_bench.analysis.study import StudyOptions, analyze_frames
from ray_bench.analysis.metrics import TestOptions
from ray_bench.report.figures import FIGURE_NAMES, HOUSING_FIGURE_NAMES
from ray_bench.report.html import write_report
from tests.analysis.conftest import models as model_table
from tests.analysis.housing_rows import answers, frame

HOUSING_TABLES = ("housing_refusals", "housing_tests", "housing_paired", "housing_quant_gaps")


def _analysis(tmp_path, refuse=0.1):
    """What `ray-bench analyze` writes for a housing-only run of a base and its variant."""
    rows = answers("base", seed=1, refuse=refuse) + answers("base-rtn-w4a16", seed=2, woman_bonus=5.0, refuse=refuse)
    options = StudyOptions(tests=TestOptions(n_permutations=200), text_metrics=False)
    tables = analyze_frames(frame(rows), model_table({"base-rtn-w4a16": "base"}), options)
    directory = tmp_path / "analysis"
    directory.mkdir()
    for name, table in tables.items():
        table.write_parquet(directory / f"{name}.parquet")
    (directory / "analysis.json").write_text(json.dumps({"options": {"n_permutations": 200}, "warnings": []}))
    return directory


def test_the_housing_section_shows_every_figure_and_table(tmp_path):
    directory = _analysis(tmp_path)
    result = write_report(directory, directory / "report.html")
    assert result.figures == HOUSING_FIGURE_NAMES
    assert {name for name, _ in result.skipped} == set(FIGURE_NAMES)  # no closed pairs: noted, not drawn
    assert "text_changes.parquet" in dict(result.skipped)["figS_text_changes"]
    assert set(HOUSING_TABLES) <= set(result.tables)
    html = (directory / "report.html").read_text()
    assert "Housing audit: 192 answers." in html and html.count("<img ") == len(HOUSING_FIGURE_NAMES)
    for name in (*HOUSING_FIGURE_NAMES, *(f"table-{t}" for t in HOUSING_TABLES)):
        assert f'id="{name}"' in html, name
    for name in HOUSING_FIGURE_NAMES:
        assert (result.figures_dir / f"{name}.svg").stat().st_size > 0
    plotted = pl.read_csv(result.figures_dir / "figH3_housing_refusals.csv")
    assert set(plotted["model"]) == {"base", "base-rtn-w4a16"} and plotted["no_score_rate"].max() > 0
    heat = pl.read_csv(result.figures_dir / "figH2_housing_heatmaps.csv")
    assert {(r, c) for r, c in heat.select("row_factor", "col_factor").unique().iter_rows()} == {
        ("credit_scores", "gender"), ("eviction", "race"), ("eviction", "credit_scores")}
    gaps = pl.read_csv(result.figures_dir / "table_housing_quant_gaps.csv")
    assert gaps.filter(pl.col("level") == "Woman").height == 2


def test_a_model_that_never_scores_gets_the_refusal_figure_and_notes_for_the_rest(tmp_path):
    directory = _analysis(tmp_path, refuse=1.0)  # as the demo's random tiny model
    result = write_report(directory, directory / "report.html")
    skipped = dict(result.skipped)
    assert result.figures == ("figH3_housing_refusals",)
    assert {"figH1_housing_scores", "figH2_housing_heatmaps", "figH4_housing_gaps"} <= set(skipped)
    assert "no scored" in skipped["figH1_housing_scores"]
    refusals = pl.read_csv(result.figures_dir / "table_housing_refusals.csv")
    assert refusals.filter(pl.col("factor") == "(all)")["no_score_rate"].to_list() == [1.0, 1.0]


def test_without_the_housing_tables_there_is_no_housing_section(tmp_path):
    directory = _analysis(tmp_path)
    for path in directory.glob("housing_*.parquet"):
        path.unlink()
    result = write_report(directory, directory / "report.html")
    names = [*result.figures, *(name for name, _ in result.skipped)]
    assert not any(name.startswith("figH") for name in names)
    assert not any(name.startswith("housing") for name in result.tables)
    assert "Housing audit" not in (directory / "report.html").read_text()
