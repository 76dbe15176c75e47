"""`ray-bench analyze` end to end on a small run: every table written, provenance, errors."""

import json

import polars as pl
import pytest

from ray_bench.cli.main import main
from tests.results.conftest import card, write_run

TABLES = ("models", "flips", "uncertainty", "question_flips", "significance", "stereoset", "groups", "rankings",
          "entropy_hist", "entropy_box", "entropy_diff_hist", "text_changes")


def test_analyze_writes_every_table_with_provenance(tmp_path, capsys):
    runs, _ = write_run(tmp_path, {"base": None, "base-rtn-w4a16": card("base"), "ctl": None})
    out = tmp_path / "analysis"
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "--results", str(runs), "--out", str(out), "--control", "ctl=base", "--permutations", "50",
              "--min-group-questions", "1", "--format", "csv"])
    assert exit_info.value.code == 0
    captured = capsys.readouterr()
    summary = pl.read_csv(out / "flips.csv").filter(pl.col("axis") == "(all)")
    assert captured.out.splitlines()[0].startswith("base,variant,role")
    assert len(captured.out.splitlines()) == summary.height + 1
    for name in TABLES:
        assert pl.read_parquet(out / f"{name}.parquet").height > 0, name
        assert (out / f"{name}.csv").stat().st_size > 0
    assert (out / "rows.parquet").exists() and not (out / "rows.csv").exists()
    meta = json.loads((out / "analysis.json").read_text())
    assert meta["options"]["n_permutations"] == 50 and meta["options"]["seed"] == 0
    assert meta["pairs"]["base-rtn-w4a16"] == {"base": "base", "role": "variant", "source": "card"}
    assert meta["pairs"]["ctl"]["role"] == "control"
    assert meta["provenance"]["packages"]["polars"] and meta["run_manifest"]["runs"]
    flips = pl.read_parquet(out / "flips.parquet")
    variant = flips.filter((pl.col("variant") == "base-rtn-w4a16") & (pl.col("axis") == "(all)"))
    assert variant["control_flip_rate"].null_count() == 0  # the control sits beside each variant
    assert variant.select("method", "scheme", "w_bits", "a_bits").row(0) == ("rtn", "w4a16", 4, 16)


def test_analyze_refuses_an_unknown_pair_with_error_and_hint(tmp_path, capsys):
    runs, _ = write_run(tmp_path, {"base": None, "v": None})
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "--results", str(runs), "--out", str(tmp_path / "a"), "--pair", "v=nobody"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "Error: --pair v=nobody: model 'nobody' has no results"
    assert err[1].startswith("Hint: Models in the results: base, v")
    assert not (tmp_path / "a").exists()
