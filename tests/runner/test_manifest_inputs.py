"""Manifests and source files that parse badly, or parse to the wrong shape: one clear error."""

from __future__ import annotations

import pytest

from ray_bench.datasets.loading import parse_json_rows
from ray_bench.datasets.sources import FetchedFile
from ray_bench.errors import DatasetError, ResultsError
from ray_bench.results.reading import read_manifest
from ray_bench.runner.manifest import Manifest

DEEP = "[" * 200_000 + "]" * 200_000


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (DEEP, "nested too deeply"),
        ("[1, 2]", "holds a JSON list"),
        ('{"runs": [], "shards": "oops"}', "field 'shards' is a str"),
        ('{"shards": {"m/BBQ/shard-00000": 3}}', "shard 'm/BBQ/shard-00000' is not an object"),
    ],
)
def test_run_manifest_of_the_wrong_shape_is_an_error_not_a_traceback(tmp_path, text, needle):
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(ResultsError, match=needle) as info:
        Manifest.load_or_create(tmp_path)
    assert "manifest.json" in str(info.value) and info.value.hint


def test_reading_a_deeply_nested_manifest_names_the_file(tmp_path):
    (tmp_path / "manifest.json").write_text(DEEP)
    with pytest.raises(ResultsError, match="nested too deeply"):
        read_manifest(tmp_path)


def test_deeply_nested_question_file_is_a_dataset_error():
    with pytest.raises(DatasetError, match="nested too deeply") as info:
        parse_json_rows(FetchedFile(name="BBQ/Age.json", data=DEEP.encode()))
    assert "BBQ/Age.json" in str(info.value)
