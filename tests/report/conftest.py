"""Fixtures: a synthetic analysis directory, and the report written from it once per session."""

from __future__ import annotations

import shutil

import pytest

from ray_bench.report.html import write_report
from tests.report.synthetic import build_tables, write_analysis_dir


@pytest.fixture(scope="session")
def tables():
    """The synthetic tables (do not modify; copy with ``.clone()``)."""
    return build_tables()


@pytest.fixture(scope="session")
def report(tmp_path_factory, tables):
    """(analysis dir, ReportResult) of the full synthetic analysis, written once."""
    directory = write_analysis_dir(tmp_path_factory.mktemp("full") / "analysis", tables)
    return directory, write_report(directory, directory / "report.html")


@pytest.fixture
def analysis_copy(tmp_path, report):
    """A fresh copy of the synthetic analysis directory (tables only) to break."""
    source, _ = report
    target = tmp_path / "analysis"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("figures", "report.html"))
    return target
