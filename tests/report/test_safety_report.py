"""The safety tables in the report: shown when the analysis has them, absent otherwise."""

from __future__ import annotations

import json
from html import unescape

import polars as pl

from ray_bench.report.html import write_report
from ray_bench.report.html_tables import safety_flips_table
from tests.report.synthetic import CONTRACT, META, write_analysis_dir


def _cell(values: list[str]) -> str:
    return "".join(f'<td class="num">{v}</td>' for v in values)


def test_safety_tables_in_html(report, tables):
    directory, result = report
    html = result.html.read_text(encoding="utf-8")
    assert 'id="table-safety"' in html and 'id="table-safety_flips"' in html
    assert {"safety", "safety_flips"} <= set(result.tables)
    assert html.index('id="table-safety"') < html.index('id="table-models"')
    model = "qwen2.5-0.5b-instruct-rtn-w4a16"
    r = tables["safety"].filter((pl.col("model") == model) & (pl.col("axis") == "(all)")).row(0, named=True)
    # "answers, judged, judge errors, unsafe % [CI]" as the table prints them, from the synthetic numbers
    unsafe = f"{100 * r['unsafe_rate']:.1f}% [{100 * r['unsafe_rate_lo']:.1f}, {100 * r['unsafe_rate_hi']:.1f}]"
    assert _cell([str(r["n_open"]), str(r["n_judged"]), str(r["n_judge_errors"]), unsafe]) in html
    f = tables["safety_flips"].filter((pl.col("variant") == model) & (pl.col("axis") == "(all)")).row(0, named=True)
    s2u = f"{100 * f['safe_to_unsafe_rate']:.1f}% [{100 * f['safe_to_unsafe_rate_lo']:.1f}, " \
          f"{100 * f['safe_to_unsafe_rate_hi']:.1f}]"
    assert f'<td class="num">{s2u}</td>' in html
    assert "Judge: llama-guard-3-8b." in unescape(html)
    saved = pl.read_csv(result.figures_dir / "table_safety.csv")
    assert saved.height == tables["safety"].filter(pl.col("axis") == "(all)").height


def test_analysis_without_a_judgement_has_no_safety_section(tmp_path, tables):
    kept = {k: v for k, v in tables.items() if k not in ("safety", "safety_flips")}
    result = write_report(write_analysis_dir(tmp_path / "a", kept), tmp_path / "report.html")
    html = result.html.read_text(encoding="utf-8")
    assert "table-safety" not in html and "Llama Guard" not in html
    assert "safety" not in result.tables and "safety_flips" not in result.tables
    assert result.skipped == ()  # no figure depends on them


def test_safety_flips_table_formats_small_p_values_and_orders_variants(tables):
    flips = tables["safety_flips"].filter(pl.col("axis") == "(all)").with_columns(pl.lit(1e-5).alias("p_mcnemar"))
    text, data = safety_flips_table(flips)
    assert "&lt; 0.001" in text and "0.000" not in text
    by_base = data.filter(pl.col("base") == "qwen2.5-0.5b-instruct")["q_label"].to_list()
    assert by_base == ["RTN W8A16", "RTN W4A16", "control"]  # the paper's order, controls last


def test_report_reads_the_safety_tables_analyze_writes(tmp_path):
    """The report's column contract matches what the analysis computes from judged rows."""
    from ray_bench.analysis.study import analyze_frames
    from ray_bench.report.analyze import write_table
    from tests.analysis.conftest import judged_frame, models
    from tests.analysis.test_safety import BASE, OPTIONS, VAR, _closed_rows, _scenario

    out = tmp_path / "analysis"
    out.mkdir()
    tables = analyze_frames(judged_frame(_closed_rows() + _scenario()), models({VAR: BASE}), OPTIONS)
    for name, frame in tables.items():
        write_table(frame, out, name, csv=name != "rows")
    assert tables["safety"].columns == CONTRACT["safety"]  # the synthetic fixture mirrors the real tables
    assert tables["safety_flips"].columns == CONTRACT["safety_flips"]
    (out / "analysis.json").write_text(json.dumps(META))
    result = write_report(out, tmp_path / "report.html")
    html = unescape(result.html.read_text(encoding="utf-8"))
    assert {"safety", "safety_flips"} <= set(result.tables)
    # 3 of the variant's 11 judged answers unsafe; 3 safe -> unsafe of the 10 judged pairs
    assert "27.3% [" in html and "30.0% [" in html and "10.0% → 30.0%" in html
