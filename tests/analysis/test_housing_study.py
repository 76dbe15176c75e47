"""The housing tables inside the whole analysis: one-model runs analyze, mixed runs keep every table,
and a run read from disk carries the design (``source_fields``) into the analysis."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import polars as pl
import pytest

from ray_bench.analysis.models import unpaired_model_table
from ray_bench.analysis.study import PAIRED_TABLES, StudyOptions, analyze_frames
from ray_bench.errors import AnalysisError
from tests.analysis.conftest import frame as closed_frame
from tests.analysis.conftest import models as model_table
from tests.analysis.conftest import row
from tests.analysis.housing_rows import answers, frame

HOUSING = ("housing_scores", "housing_refusals", "housing_levels", "housing_cells", "housing_tests", "housing_dunn",
           "housing_paired", "housing_quant_gaps")


def _solo(name="llm"):
    return unpaired_model_table({name: {"path": f"/m/{name}"}})


def test_a_housing_only_run_of_one_model_analyzes():
    tables = analyze_frames(frame(answers("llm", seed=4)), _solo())
    assert set(HOUSING) <= set(tables) and all(tables[t].height == 0 for t in PAIRED_TABLES)
    assert tables["housing_scores"].height == 96 and tables["models"]["role"].to_list() == ["base"]
    assert tables["housing_quant_gaps"].height == 0  # nothing to compare with
    kw = tables["housing_tests"].filter(pl.col("factor") == "credit_scores").row(0, named=True)
    assert kw["status"] == "tested" and kw["p_value"] < 1e-6  # 30 points between the credit levels
    assert set(tables["housing_paired"]["status"]) == {"tested"}


def test_without_housing_rows_an_unpaired_run_still_raises():
    rows = closed_frame([row("llm", "q1", [0.6, 0.4], labels=["a", "b"], answer=0)])
    with pytest.raises(AnalysisError, match="no closed question was answered by both"):
        analyze_frames(rows, _solo())


def test_a_mixed_run_keeps_the_paired_tables_and_adds_the_housing_ones():
    closed = [row(m, f"q{i}", [0.7, 0.3] if (i + (m == "v")) % 3 else [0.2, 0.8], labels=["a", "b"], answer=0)
              for m in ("b", "v") for i in range(12)]
    housing = answers("b", seed=1) + answers("v", seed=2, woman_bonus=6.0)
    rows = pl.concat([closed_frame(closed), frame(housing)], how="diagonal_relaxed")
    tables = analyze_frames(rows, model_table({"v": "b"}), StudyOptions())
    assert tables["flips"].filter(pl.col("dataset") == "CEB-Jigsaw").height > 0
    gaps = tables["housing_quant_gaps"]
    assert set(gaps["variant"]) == {"v"} and gaps.filter(pl.col("level") == "Woman").height == 2


def test_a_housing_run_of_a_base_and_its_variant_labels_the_text_changes_with_the_quantization():
    from ray_bench.analysis.study import QUANT_COLUMNS

    models = model_table({"v": "b"}).with_columns(method=pl.lit("rtn"), scheme=pl.lit("W4A16"))
    rows = frame(answers("b", seed=1) + answers("v", seed=2, woman_bonus=6.0))  # open answers only
    tables = analyze_frames(rows, models, StudyOptions())
    changes = tables["text_changes"]
    assert changes.height > 0 and set(QUANT_COLUMNS) <= set(changes.columns)
    assert set(changes["method"]) == {"rtn"} and set(changes["scheme"]) == {"W4A16"}
    assert all(tables[t].height == 0 for t in PAIRED_TABLES)


def _write_run(tmp_path, rows: list[dict]):
    """A results directory (no manifest: the shard layout) and its prepared questions."""
    from ray_bench.results import write_shard
    from ray_bench.schema import question_schema, result_schema

    data, runs = tmp_path / "data", tmp_path / "runs"
    data.mkdir()
    questions = [{"question_id": r["question_id"], "dataset": "Housing", "subset": "Housing-v2",
                  "axis": "race_x_gender", "kind": "open", "prompt": "p", "group": r["group"],
                  "source_fields": r["source_fields"]} for r in rows if r["model"] == rows[0]["model"]]
    pq.write_table(pa.Table.from_pylist(questions, schema=question_schema()), data / "Housing-v2.parquet")
    for model in sorted({r["model"] for r in rows}):
        shard = runs / model / "Housing-v2" / "shard-00000.parquet"
        shard.parent.mkdir(parents=True)
        result = [{c: r[c] for c in ("question_id", "model", "dataset", "subset", "axis", "kind", "response",
                                     "error")} for r in rows if r["model"] == model]
        write_shard(shard, pa.Table.from_pylist(result, schema=result_schema()), "fp")
    return runs, data


def test_a_one_model_housing_run_on_disk_goes_through_analyze_run(tmp_path):
    from ray_bench.config import AnalyzeConfig
    from ray_bench.report.analyze import analyze_run
    from ray_bench.results import scan_run

    runs, data = _write_run(tmp_path, answers("llm", seed=5))
    scanned = scan_run(runs, data)
    assert "source_fields" in scanned.rows.collect_schema().names()
    out = analyze_run(AnalyzeConfig(results=runs, out=tmp_path / "analysis", data=data))
    assert set(HOUSING) <= set(out.tables)
    written = pl.read_parquet(tmp_path / "analysis" / "housing_refusals.parquet")
    assert written.filter(pl.col("factor") == "(all)")["n"].to_list() == [96]


def test_the_cli_analyzes_a_one_model_housing_run_and_prints_its_gaps(tmp_path, capsys):
    from ray_bench.cli.main import main

    runs, data = _write_run(tmp_path, answers("llm", seed=6))
    out = tmp_path / "analysis"
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "--results", str(runs), "--data", str(data), "--out", str(out),
              "--housing-correction", "bonferroni", "--format", "csv"])
    assert exit_info.value.code == 0
    printed = pl.read_csv(capsys.readouterr().out.encode())
    assert printed.filter((pl.col("level") == "Woman") & (pl.col("reference") == "Man"))["n_pairs"].to_list() == [32]
    assert set(pl.read_parquet(out / "housing_dunn.parquet")["correction"]) == {"bonferroni"}
