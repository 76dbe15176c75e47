"""`ray-bench report`: stdout is the HTML path, errors are one Error/Hint pair."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from ray_bench.cli.report import EPILOG, report
from ray_bench.errors import ResultsError


def _app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    app.command("report", epilog=EPILOG)(report)
    app.command("noop")(lambda: None)  # two commands: `report` stays a subcommand
    return app


def test_report_prints_the_html_path(report, tmp_path):
    analysis, _ = report
    out = tmp_path / "site" / "r.html"
    result = CliRunner().invoke(_app(), ["report", "--analysis", str(analysis), "--out", str(out),
                                         "--figures", str(tmp_path / "figs")])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out) and out.is_file()
    assert (tmp_path / "figs" / "fig2a_entropy_hist.svg").is_file()


def test_report_missing_analysis_raises_results_error(tmp_path):
    result = CliRunner().invoke(_app(), ["report", "--analysis", str(tmp_path / "nope")])
    assert isinstance(result.exception, ResultsError) and "nope" in str(result.exception)


def test_help_ends_with_examples():
    result = CliRunner().invoke(_app(), ["report", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "--analysis" in result.output and "Examples:" in result.output
    assert "ray-bench report --analysis runs/r1/analysis" in result.output
