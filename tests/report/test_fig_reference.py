"""Report figures and table of the reference gap (report/fig_reference.py) on small hand-built tables."""

import polars as pl
import pytest

from ray_bench.analysis.reference_gap_tables import GapOptions, reference_gap_tables
from ray_bench.report.fig_reference import REFERENCE_TABLE_COLUMNS, reference_gap_summary_table
from ray_bench.report.figures import REFERENCE_FIGURES
from ray_bench.report.style import NoFigureData
from tests.analysis.test_reference_gap_tables import MODELS, REFERENCE, _rows


@pytest.fixture(scope="module")
def tables():
    return reference_gap_tables(_rows(), MODELS, REFERENCE,
                                GapOptions(n_bootstrap=50, n_permutations=50, floor_draws=200))


def test_specs_fit_figure_spec_and_the_tables_have_the_columns(tables):
    specs = REFERENCE_FIGURES
    assert [s.name for s in specs] == ["figR1_reference_tv", "figR2_signed_gaps", "figR3_pair_change"]
    for name, columns in REFERENCE_TABLE_COLUMNS.items():
        assert set(columns) <= set(tables[name].columns), name


def test_every_figure_draws_with_its_caption(tables):
    for spec in REFERENCE_FIGURES:
        fig, data = spec.build(*(tables[t] for t in spec.tables))
        assert fig.axes and data.height > 0, spec.name
        caption = spec.caption(tables, data, {})
        assert caption and "?" not in caption, spec.name
    fig, data = REFERENCE_FIGURES[0].build(tables["reference_gap"])
    assert set(data["model"]) == {"base", "q4"} and data.height == 4  # 2 models x 2 occupations


def test_empty_tables_skip_the_figure(tables):
    for spec in REFERENCE_FIGURES:
        empty = [tables[t].clear() for t in spec.tables]
        with pytest.raises(NoFigureData):
            spec.build(*empty)


def test_summary_table_html(tables):
    html, frame = reference_gap_summary_table(tables["reference_gap_summary"])
    assert frame.height == 2 and "<table>" in html and "weighted TV" in html
    assert frame.filter(pl.col("model") == "base")["worst_occupation"].to_list() == ["electrician"]
