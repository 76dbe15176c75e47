"""Reading a run: shards joined lazily with their questions; only the planned files."""

import shutil

import polars as pl
import pytest

from ray_bench.errors import ResultsError
from ray_bench.results import model_settings, scan_run


def test_scan_run_joins_questions_and_reads_only_manifest_shards(small_run):
    runs, data = small_run
    bbq = runs / "base" / "BBQ" / "shard-00000.parquet"
    shutil.copy(bbq, bbq.with_name("shard-00000-copy.parquet"))  # a stray copy is never counted
    run = scan_run(runs)
    assert isinstance(run.rows, pl.LazyFrame) and run.data_dir == data
    rows = run.rows.collect()
    expected = sum(pl.read_parquet(p).height for p in data.glob("*.parquet"))
    assert rows.filter(pl.col("model") == "base").height == expected
    bbq_rows = rows.filter((pl.col("subset") == "BBQ") & (pl.col("model") == "base"))
    questions = pl.read_parquet(data / "BBQ.parquet")
    assert bbq_rows.height == questions.height
    joined = bbq_rows.join(questions, on="question_id", suffix="_q")
    assert (joined["choice_labels"] == joined["choice_labels_q"]).all()
    assert set(bbq_rows["context_condition"]) <= {"ambig", "disambig"}
    assert run.model_names == ["base", "base-rtn-w4a16", "base-rtn-w8a16"]


def test_model_settings_from_the_manifest(small_run):
    run = scan_run(small_run[0])
    settings = model_settings(run.manifest)
    assert settings["base"]["engine"] == "hf" and settings["base"]["quantization_card"] is None
    assert settings["base-rtn-w4a16"]["quantization_card"]["base_model"]["name"] == "base"


def test_missing_data_and_missing_shards_are_clear_errors(small_run, tmp_path):
    runs, data = small_run
    with pytest.raises(ResultsError, match="prepared questions of 'BBQ' are missing") as info:
        scan_run(runs, tmp_path / "elsewhere").rows.collect()
    assert "--data" in info.value.hint
    (runs / "base" / "IAT" / "shard-00000.parquet").unlink()
    with pytest.raises(ResultsError, match="lists 1 done shard"):
        scan_run(runs)
    with pytest.raises(ResultsError, match="does not exist"):
        scan_run(tmp_path / "nope")
