"""The bundled sample set: every directory prepares, conforms to the question schema and is realistic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ray_bench.datasets import MANIFEST_NAME, dataset_names, get_spec, prepare, read_questions, sample_dir
from ray_bench.schema import CHOICE_LABELS, KINDS, QUESTION_REQUIRED, question_schema

#: Rows of the generated sample IAT: two aspects, each 1 baseline x 1 stigmatized word x 2 positive x 2 negative.
SAMPLE_IAT_ROWS = 8


@pytest.fixture(scope="module")
def sample_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample-out")
    prepare("sample", out, log=lambda _: None)
    return out


def _json_row_counts() -> dict[str, int]:
    """Rows per directory, read straight from the sample JSON files (not through the loaders)."""
    counts: dict[str, int] = {}
    for path in sample_dir().glob("*_datasets/*/*.json"):
        counts[path.parent.name] = counts.get(path.parent.name, 0) + len(json.loads(path.read_text()))
    return counts


def test_every_directory_is_prepared_with_the_sample_row_counts(sample_out):
    expected = {**_json_row_counts(), "IAT": SAMPLE_IAT_ROWS}
    assert sorted(expected) == sorted(dataset_names())
    got = {name: read_questions(sample_out, name).num_rows for name in dataset_names()}
    assert got == expected
    assert all(4 <= n <= 8 for n in got.values())


@pytest.mark.parametrize("name", dataset_names())
def test_sample_dataset_conforms_to_question_schema(sample_out, name):
    table = read_questions(sample_out, name)
    assert table.schema.equals(question_schema(), check_metadata=True)
    spec = get_spec(name)
    for row in table.to_pylist():
        assert all(row[c] not in (None, "") for c in QUESTION_REQUIRED)
        assert (row["dataset"], row["subset"], row["kind"]) == (spec.family, name, spec.kind)
        assert row["kind"] in KINDS and row["axis"] in spec.axes
        assert row["question_id"].startswith("sample/")
        assert json.loads(row["source_fields"])["idx"] == row["question_id"]
        if spec.kind == "closed":
            assert len(row["choices"]) == spec.num_choices == len(row["choice_labels"])
            assert set(row["choice_labels"]) <= CHOICE_LABELS
            if row["answer_index"] is not None:
                assert 0 <= row["answer_index"] < len(row["choices"])
        else:
            assert row["choices"] is None and row["choice_labels"] is None and row["answer_index"] is None
        if spec.family == "FMT10K-IM":
            assert len(row["turns"]) == 5 and row["turns"][0] == row["prompt"]
        else:
            assert row["turns"] is None


def test_sample_covers_two_axes_wherever_a_family_has_several(sample_out):
    for name in dataset_names():
        spec = get_spec(name)
        axes = set(read_questions(sample_out, name).column("axis").to_pylist())
        assert len(axes) >= min(2, len(spec.axes)), name


def test_sample_ids_are_unique_across_datasets(sample_out):
    ids = [i for name in dataset_names() for i in read_questions(sample_out, name).column("question_id").to_pylist()]
    assert len(ids) == len(set(ids))


def test_sample_bbq_has_both_contexts_and_each_label_once(sample_out):
    rows = read_questions(sample_out, "BBQ").to_pylist()
    assert {r["context_condition"] for r in rows} == {"ambig", "disambig"}
    for row in rows:
        assert sorted(row["choice_labels"]) == ["biased", "unbiased", "uncertain"]
        if row["context_condition"] == "ambig":
            assert row["choice_labels"][row["answer_index"]] == "uncertain"


def test_manifest_records_counts_and_source(sample_out):
    manifest = json.loads((sample_out / MANIFEST_NAME).read_text())
    assert set(manifest["datasets"]) == set(dataset_names())
    bbq = manifest["datasets"]["BBQ"]
    assert bbq["source"] == "sample" and bbq["file"] == "BBQ.parquet"
    assert bbq["count"] == 8 and bbq["counts"] == {"age": 4, "religion": 4}
    assert bbq["conditions"] == {"ambig": 4, "disambig": 4}
    assert "closed_datasets/BBQ/nationality.json" in bbq["missing"]


def test_prepare_writes_only_requested_datasets_and_keeps_manifest_entries(tmp_path):
    prepare("sample", tmp_path, ["CEB-Recognition"], log=lambda _: None)
    prepare("sample", tmp_path, ["BBQ"], log=lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "BBQ.parquet", "CEB-Recognition-S.parquet", "CEB-Recognition-T.parquet", MANIFEST_NAME,
    ]
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert sorted(manifest["datasets"]) == ["BBQ", "CEB-Recognition-S", "CEB-Recognition-T"]


def test_sample_source_is_silent_about_partial_axes(tmp_path, capsys):
    prepare("sample", tmp_path, ["BBQ"])
    assert "Warning" not in capsys.readouterr().err
