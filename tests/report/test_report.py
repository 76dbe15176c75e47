"""write_report: files, self-contained HTML, captions with counts, missing and optional tables."""

from __future__ import annotations

import json
import re
from html import unescape

import matplotlib.image as mpimg
import polars as pl
import pytest

from ray_bench.errors import ResultsError
from ray_bench.report.figures import FIGURE_NAMES
from ray_bench.report.html import ReportResult, write_report
from tests.report.synthetic import CONTRACT, META, write_analysis_dir


def _captions(html: str) -> dict[str, str]:
    """Figure id -> caption text."""
    found = re.findall(r'<figure id="([^"]+)">.*?<figcaption>(.*?)<span', html, flags=re.S)
    return {name: unescape(text) for name, text in found}


def test_fixture_has_exactly_the_contract_columns(report):
    directory, _ = report
    for name, cols in CONTRACT.items():
        assert pl.read_parquet(directory / f"{name}.parquet").columns == cols, name
        assert (directory / f"{name}.csv").is_file()


def test_every_figure_written_as_svg_png_csv(report):
    directory, result = report
    assert isinstance(result, ReportResult)
    assert result.figures == FIGURE_NAMES and result.skipped == ()
    assert result.figures_dir == directory / "figures" and result.html.is_file()
    for name in FIGURE_NAMES:
        svg = (result.figures_dir / f"{name}.svg").read_text()
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg
        pixels = mpimg.imread(result.figures_dir / f"{name}.png")
        assert pixels.shape[0] > 200 and pixels.shape[1] > 300
        assert float(pixels[..., :3].var()) > 1e-3, f"{name}.png looks blank"
        data = pl.read_csv(result.figures_dir / f"{name}.csv")
        assert data.height > 0, name
    for table in result.tables:
        assert pl.read_csv(result.figures_dir / f"table_{table}.csv").height > 0


def test_html_is_self_contained(report):
    _, result = report
    html = result.html.read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:[a-z]+:)?//""", html, flags=re.I)
    assert "@import" not in html and "url(" not in html
    for src in re.findall(r'src="([^"]+)"', html):
        assert src.startswith("data:image/svg+xml;base64,")
    for href in re.findall(r'href="([^"]+)"', html):
        assert href.startswith("#")
    assert html.count("<img ") == len(FIGURE_NAMES)
    assert html.count("<figure ") == len(FIGURE_NAMES)


def test_header_shows_provenance_and_escaped_warnings(report):
    _, result = report
    html = result.html.read_text(encoding="utf-8")
    assert 'id="warnings"' in html and "Warnings (1)" in html
    assert "&lt;not only quantization&gt;" in html and "<not only" not in html
    assert "0123456789abcdef" in html and "2025-01-01T00:00:00+00:00" in html and "/data/runs/r1" in html
    assert "n_permutations" in html and "min_group_questions" in html
    assert html.index('id="warnings"') < html.index('id="fig2a_entropy_hist"')


def test_captions_count_questions_and_models(report, tables):
    _, result = report
    caps = _captions(result.html.read_text(encoding="utf-8"))
    assert set(caps) == set(FIGURE_NAMES)
    models = "2 base models, 4 quantized variants and 1 control"
    pairs = int(tables["entropy_hist"]["count"].sum())
    assert f"{pairs:,} question × variant pairs" in caps["fig2a_entropy_hist"] and models in caps["fig2a_entropy_hist"]
    closed_q = tables["question_flips"].filter(pl.col("dataset") != "FMT10K").height
    assert f"({closed_q:,} questions) in 3 datasets" in caps["fig2a_entropy_hist"]
    sig = tables["significance"]
    n_tests = sig.filter((pl.col("role") != "control") & (pl.col("status") == "tested")
                         & (pl.col("axis") != "(all)")).height
    for name in ("fig3a_significant_share", "fig4a_significant_by_method", "fig4b_significant_by_base"):
        assert f"{n_tests:,} tests" in caps[name] and "4 variants of 2 base models" in caps[name]
        assert "1000 permutations" in caps[name]
    assert f"{tables['question_flips'].height:,} questions in 4 datasets" in caps["fig5a_question_flips"]
    assert "BBQ (ambig)" in caps["fig5b_groups"] and "fewer than 50 questions" in caps["fig5b_groups"]
    assert "Group 'male'" in caps["fig5c_group_across_datasets"]
    assert "RTN W4A16" in caps["fig4c_rankings"] and "2 base models" in caps["fig4c_rankings"]


def test_uncertainty_table_in_html(report, tables):
    _, result = report
    html = result.html.read_text(encoding="utf-8")
    assert 'id="table-uncertainty"' in html
    for label in ("BBQ (ambig)", "BBQ (disambig)", "CEB-Recognition-S", "CEB-Recognition-T"):
        assert f'<td class="txt">{label}</td>' in html
    assert "low entropy" in html and "high entropy" in html


def test_missing_required_table_names_the_file(analysis_copy, tmp_path):
    (analysis_copy / "flips.parquet").unlink()
    with pytest.raises(ResultsError) as info:
        write_report(analysis_copy, tmp_path / "r.html")
    assert "flips.parquet" in str(info.value) and "missing" in str(info.value)
    assert "ray-bench analyze" in info.value.hint and "--out" in info.value.hint
    assert not (tmp_path / "r.html").exists()


def test_unreadable_or_incomplete_table_names_the_file(analysis_copy, tmp_path):
    (analysis_copy / "significance.parquet").write_bytes(b"not parquet")
    with pytest.raises(ResultsError, match=r"significance\.parquet cannot be read"):
        write_report(analysis_copy, tmp_path / "r.html")
    pl.DataFrame({"model": ["a"]}).write_parquet(analysis_copy / "models.parquet")
    with pytest.raises(ResultsError, match=r"models\.parquet lacks the column\(s\) base"):
        write_report(analysis_copy, tmp_path / "r.html")


def test_missing_directory_or_analysis_json(tmp_path, analysis_copy):
    with pytest.raises(ResultsError, match="does not exist"):
        write_report(tmp_path / "nope", tmp_path / "r.html")
    (analysis_copy / "analysis.json").unlink()
    with pytest.raises(ResultsError, match=r"analysis\.json is missing") as info:
        write_report(analysis_copy, tmp_path / "r.html")
    assert "ray-bench analyze" in info.value.hint


def test_optional_tables_absent_skip_their_figures(tmp_path, tables):
    kept = {k: v for k, v in tables.items() if k not in ("groups", "rankings", "text_changes")}
    directory = write_analysis_dir(tmp_path / "a", kept)
    result = write_report(directory, tmp_path / "out" / "report.html", tmp_path / "figs")
    skipped = dict(result.skipped)
    assert set(skipped) == {"fig4c_rankings", "fig5b_groups", "fig5c_group_across_datasets", "figS_text_changes"}
    assert "groups.parquet" in skipped["fig5b_groups"] and "rankings.parquet" in skipped["fig4c_rankings"]
    assert set(result.figures) == set(FIGURE_NAMES) - set(skipped)
    assert result.figures_dir == tmp_path / "figs" and not (tmp_path / "figs" / "fig5b_groups.png").exists()
    html = result.html.read_text(encoding="utf-8")
    assert 'id="skipped"' in html and "Figures not shown (4)" in html and "groups.parquet" in html
    assert html.count("<img ") == len(result.figures)
    assert 'src="data:image/svg+xml;base64,' in html and "../figs/fig2a_entropy_hist.svg" in html


def test_empty_tables_skip_figures_without_crashing(tmp_path, tables):
    empty = dict(tables)
    empty["significance"] = tables["significance"].clear()
    empty["entropy_hist"] = pl.DataFrame()  # written without columns, as analyze does for no rows
    empty["groups"] = tables["groups"].filter(pl.col("dataset") == "none")
    directory = write_analysis_dir(tmp_path / "a", empty)
    result = write_report(directory, tmp_path / "report.html")
    skipped = dict(result.skipped)
    for name in ("fig2a_entropy_hist", "fig3a_significant_share", "fig3b_effect_size", "fig4a_significant_by_method",
                 "fig5b_groups", "fig5c_group_across_datasets"):
        assert "no rows" in skipped[name], name
    assert "fig2b_entropy_box" in result.figures and "fig5a_question_flips" in result.figures
    assert "No rows in this table." in result.html.read_text(encoding="utf-8")


def test_meta_variants_render():
    from ray_bench.report.html import _meta_for_header
    from ray_bench.report.render import header_html

    meta = json.loads(json.dumps(META))
    meta["warnings"] = []
    meta["provenance"]["git"] = "abc"
    html = header_html(_meta_for_header(meta), "/a", "counts")
    assert 'id="warnings"' not in html and "<td>qwen2.5-0.5b-instruct-control</td>" in html
    assert "abc" in html
    meta = {"warnings": "one <b>warning</b>", "pairs": [{"variant": "v", "base": "b"}], "provenance": "odd"}
    html = header_html(_meta_for_header(meta), "/a", "counts")
    assert "Warnings (1)" in html and "&lt;b&gt;" in html and "<td>v</td>" in html


def test_run_without_bbq_or_open_datasets(tmp_path, tables):
    """Only CEB-Recognition: context_condition is all null (stored as type Null), no text changes."""
    only = {name: (frame.filter(pl.col("dataset") == "CEB-Recognition").with_columns(
                pl.lit(None).alias("context_condition")).select(frame.columns)
                if "dataset" in frame.columns else frame) for name, frame in tables.items()}
    assert only["flips"].schema["context_condition"] == pl.Null
    result = write_report(write_analysis_dir(tmp_path / "a", only), tmp_path / "report.html")
    skipped = dict(result.skipped)
    assert set(skipped) == {"figS_text_changes"} and "no rows" in skipped["figS_text_changes"]
    assert "CEB-Recognition" in _captions(result.html.read_text(encoding="utf-8"))["fig5b_groups"]
