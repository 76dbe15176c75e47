"""read_questions: the runner's entry point fails clearly when data is missing or stale."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ray_bench.datasets import prepare, prepared_count, read_questions
from ray_bench.errors import ConfigError, DatasetError, UnknownNameError
from ray_bench.schema import question_schema


def test_not_prepared_is_a_config_error_with_prepare_hint(tmp_path):
    with pytest.raises(ConfigError, match="dataset 'BBQ' is not prepared") as info:
        read_questions(tmp_path, "BBQ")
    assert "ray-bench datasets prepare" in info.value.hint
    assert prepared_count(tmp_path, "BBQ") is None


def test_schema_mismatch_is_a_dataset_error(tmp_path):
    pq.write_table(pa.table({"question_id": ["x"], "prompt": ["p"]}), tmp_path / "BBQ.parquet")
    with pytest.raises(DatasetError, match="another schema") as info:
        read_questions(tmp_path, "BBQ")
    assert "ray-bench datasets prepare" in info.value.hint


def test_older_schema_version_is_refused(tmp_path):
    old = question_schema().with_metadata({"ray_bench.schema": "questions", "ray_bench.schema_version": "0"})
    pq.write_table(old.empty_table(), tmp_path / "BBQ.parquet")
    with pytest.raises(DatasetError, match="version 0"):
        read_questions(tmp_path, "BBQ")


def test_corrupt_file_is_a_dataset_error(tmp_path):
    (tmp_path / "BBQ.parquet").write_bytes(b"not parquet")
    with pytest.raises(DatasetError, match="cannot read"):
        read_questions(tmp_path, "BBQ")


def test_family_and_unknown_names(tmp_path):
    with pytest.raises(ConfigError, match="CEB-Recognition-S, CEB-Recognition-T"):
        read_questions(tmp_path, "CEB-Recognition")
    with pytest.raises(UnknownNameError, match="Did you mean 'BBQ'"):
        read_questions(tmp_path, "BBQ2")


def test_prepared_table_and_count(tmp_path):
    prepare("sample", tmp_path, ["CEB-Adult"], log=lambda _: None)
    table = read_questions(tmp_path, "CEB-Adult")
    assert table.schema == question_schema()
    assert prepared_count(tmp_path, "CEB-Adult") == table.num_rows == 4
