"""Malformed sources: the error names file, row and field; nothing already prepared is touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from ray_bench.datasets import prepare
from ray_bench.errors import DatasetError


def _bbq_row(n: int, **overrides):
    row = {
        "idx": f"BBQ/age/{n}",
        "context_condition": "ambig",
        "stereotyped_groups": ["old"],
        "prompt": "Two people waited.\n\nWho was slow?",
        "choices": ["The old man", "The boy", "Unknown"],
        "unknown_label": 3,
        "answer_label": 3,
        "target_label": 1,
    }
    row.update(overrides)
    return row


def _biaslens_row(**overrides):
    row = {"idx": "BL/age/0", "prompt": "Who is smarter, x or y?", "choices": ["x", "y", "I cannot make any choice"],
           "label": ["biased", "unbiased", "uncertain"]}
    row.update(overrides)
    return row


def _ceb_rec_row(**overrides):
    row = {"idx": "R/age/0", "prompt": "Stereotype? 1. Yes; 2. No.", "label": "stereotype", "target": 1,
           "choices": ["Yes, it's a stereotype", "No, it's an anti-stereotype"]}
    row.update(overrides)
    return row


def _without(row: dict, field: str) -> dict:
    return {k: v for k, v in row.items() if k != field}


# (dataset, file content, row index named or None, field named or None, text in the message)
CASES = {
    "duplicate id": ("BBQ", [_bbq_row(0), _bbq_row(1), _bbq_row(2, idx="BBQ/age/0")], 2, "idx", "duplicate"),
    "empty prompt": ("BBQ", [_bbq_row(0), _bbq_row(1, prompt="   ")], 1, "prompt", "empty"),
    "one choice": ("BBQ", [_bbq_row(0, choices=["The old man"], target_label=1, unknown_label=1)], 0, "choices",
                   "at least 2"),
    "labels too short": ("BiasLens-Choices", [_biaslens_row(label=["biased", "unbiased"])], 0, "label",
                         "2 labels for 3 choices"),
    "unknown label": ("BiasLens-Choices", [_biaslens_row(label=["biased", "neutral", "uncertain"])], 0, "label",
                      "'neutral'"),
    "label of another family": ("BiasLens-Choices", [_biaslens_row(label=["stereotype", "unbiased", "uncertain"])], 0,
                                "label", "'stereotype'"),
    "BBQ target out of range": ("BBQ", [_bbq_row(0), _bbq_row(1, target_label=7)], 1, "target_label",
                                "out of range"),
    "BBQ target zero": ("BBQ", [_bbq_row(0, target_label=0)], 0, "target_label", "out of range"),
    "BBQ target equals unknown": ("BBQ", [_bbq_row(0, target_label=3)], 0, "target_label", "same choice"),
    "BBQ label not an int": ("BBQ", [_bbq_row(0, answer_label="3")], 0, "answer_label", "integer"),
    "BBQ bad context": ("BBQ", [_bbq_row(0, context_condition="vague")], 0, "context_condition", "vague"),
    "CEB target out of range": ("CEB-Recognition-S", [_ceb_rec_row(), _ceb_rec_row(idx="R/age/1", target=3)], 1,
                                "target", "out of range"),
    "CEB yes/no label": ("CEB-Adult", [{**_ceb_rec_row(), "label": "maybe"}], 0, "label", "'yes' or 'no'"),
    "missing unknown_label": ("BBQ", [_without(_bbq_row(0), "unknown_label")], 0, "unknown_label", "missing"),
    "missing idx": ("BBQ", [_bbq_row(0), _without(_bbq_row(1), "idx")], 1, "idx", "missing"),
    "missing choices": ("CEB-Recognition-S", [_without(_ceb_rec_row(), "choices")], 0, "choices", "missing"),
    "missing turn": ("FMT10K-IM-S", [{"idx": "F/0", **{f"{k}-turn Conv": "t" for k in range(4)}}], 0, "4-turn Conv",
                     "missing"),
    "choice not a string": ("BiasLens-Choices", [_biaslens_row(choices=["x", 7, "z"])], 0, "choices", "item 1"),
    "row not an object": ("BBQ", [_bbq_row(0), ["not", "an", "object"]], 1, None, "JSON object"),
    "not JSON": ("BBQ", '[{"idx": "BBQ/age/0", ', None, None, "not valid JSON"),
    "JSON object instead of list": ("BBQ", '{"idx": "BBQ/age/0"}', None, None, "JSON list"),
}


@pytest.fixture
def prepared_before(tmp_path: Path, write_source):
    """A good BBQ + CEB-Adult prepared into ``out``; returns (source dir, out dir, {file: (bytes, mtime)})."""
    src, out = tmp_path / "src", tmp_path / "out"
    write_source(src, "BBQ", "religion", [_bbq_row(0, idx="BBQ/religion/0")])
    write_source(src, "CEB-Adult", "gender", [{"idx": "A/0", "prompt": "Income? 1. YES; 2. NO.", "label": "yes",
                                                     "choices": ["YES", "NO"], "sensitive_attr": "female"}])
    prepare(src, out, ["BBQ", "CEB-Adult"], log=lambda _: None)
    state = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}
    return src, out, state


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_names_location_and_leaves_output_untouched(case, prepared_before, tmp_path, write_source):
    dataset, content, row, field, fragment = CASES[case]
    _, out, before = prepared_before
    bad_src = tmp_path / "bad"
    write_source(bad_src, "CEB-Adult", "gender", [{"idx": "A/1", "prompt": "Income?", "label": "no",
                                                         "choices": ["YES", "NO"], "sensitive_attr": "male"}])
    axis = "race" if dataset == "CEB-Adult" else "age"
    bad_file = write_source(bad_src, dataset, axis, content)

    with pytest.raises(DatasetError) as info:
        prepare(bad_src, out, ["CEB-Adult", dataset], log=lambda _: None)

    message = str(info.value)
    assert str(bad_file) in message and info.value.file == str(bad_file)
    assert fragment in message
    if row is not None:
        assert f"row {row}" in message and info.value.row == row
    if field is not None:
        assert f"field {field!r}" in message and info.value.field == field
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}
    assert after == before  # old Parquet files and manifest byte-identical, no temp files left
    if dataset not in ("BBQ", "CEB-Adult"):
        assert not (out / f"{dataset}.parquet").exists()


def test_duplicate_id_across_files_of_one_dataset(source_dir, tmp_path, write_source):
    write_source(source_dir, "BBQ", "age", [_bbq_row(0, idx="BBQ/x/0")])
    second = write_source(source_dir, "BBQ", "religion", [_bbq_row(0, idx="BBQ/y/0"), _bbq_row(1, idx="BBQ/x/0")])
    with pytest.raises(DatasetError, match="duplicate question id 'BBQ/x/0'") as info:
        prepare(source_dir, tmp_path / "out", ["BBQ"], log=lambda _: None)
    assert (info.value.file, info.value.row, info.value.field) == (str(second), 1, "idx")
    assert not (tmp_path / "out").exists()


def test_cli_reports_bad_input_and_exits_1(source_dir, tmp_path, capsys, write_source):
    from ray_bench.cli.main import main

    bad = write_source(source_dir, "BBQ", "age", [_bbq_row(0, target_label=7)])
    with pytest.raises(SystemExit) as info:
        main(["datasets", "prepare", "--source", str(source_dir), "--out", str(tmp_path / "out"), "--dataset", "BBQ"])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert f"Error: file {bad}, row 0, field 'target_label'" in err
    assert "Hint:" in err
    assert not (tmp_path / "out" / "BBQ.parquet").exists()


def test_preparing_every_dataset_writes_the_good_ones_and_fails_for_the_bad(source_dir, tmp_path, capsys, write_source):
    """Without --dataset one bad dataset does not stop the others; the command exits 1 for it."""
    from ray_bench.cli.main import main

    adult = {"idx": "A/gender/0", "prompt": "Income above 50K?", "label": "no", "choices": ["YES", "NO"],
             "sensitive_attr": "female"}
    write_source(source_dir, "CEB-Adult", "gender", [adult])
    bad = write_source(source_dir, "BBQ", "age", [_bbq_row(0, target_label=7)])
    out = tmp_path / "out"
    report = prepare(source_dir, out, None, log=lambda _: None)
    # IAT fails too here: its word lists are neither next to the source nor reachable offline.
    assert [p.name for p in report.prepared] == ["CEB-Adult"] and set(report.failed) <= {"BBQ", "IAT"}
    assert str(bad) in report.failed["BBQ"] and (out / "CEB-Adult.parquet").exists()
    assert not (out / "BBQ.parquet").exists()
    with pytest.raises(SystemExit) as info:
        main(["datasets", "prepare", "--source", str(source_dir), "--out", str(tmp_path / "cli")])
    assert info.value.code == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith(("Error:", "Hint:"))]
    assert err[0].startswith("Error: BBQ could not be prepared") and str(bad) in err[0]
    assert err[1].startswith("Hint: The other datasets were written") and len(err) == 2
    assert (tmp_path / "cli" / "CEB-Adult.parquet").exists()
