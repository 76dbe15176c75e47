"""Counts on the reference snapshot (../shared/datasets/ptbb) against the notes, section 1.1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ray_bench.datasets import prepare, read_questions, sample_dir

pytestmark = pytest.mark.shared

#: Rows per file in the snapshot, from the notes (BBQ: both contexts; the notes give ambiguous = half).
NOTES_COUNTS = {
    "CEB-Recognition-S": dict.fromkeys(["age", "gender", "race", "religion"], 200),
    "CEB-Recognition-T": dict.fromkeys(["age", "gender", "race", "religion"], 200),
    "CEB-Jigsaw": dict.fromkeys(["gender", "race", "religion"], 500),
    "CEB-Adult": dict.fromkeys(["gender", "race"], 500),
    "CEB-Credit": dict.fromkeys(["age", "gender"], 500),
    "BiasLens-Choices": {"ability": 982, "age": 998, "body": 989, "character": 985, "culture": 997, "gender": 1000,
                         "occupations": 997, "race": 1000, "religion": 995, "social": 987, "victim": 987},
    "BBQ": {"age": 2 * 1840, "disability_status": 2 * 778, "nationality": 2 * 1540, "physical_appearance": 2 * 788,
            "religion": 2 * 600, "sexual_orientation": 2 * 432},
    "IAT": {"race": 7733, "gender": 4681, "religion": 768, "health": 612, "age": 64},
    "StereoSet-Intersentence": {"gender": 242, "profession": 827, "race": 976, "religion": 78},
    "BiasLens-GenWhy": {"ability": 995, "age": 1000, "body": 999, "character": 1000, "culture": 1000, "gender": 1000,
                        "occupations": 1000, "race": 980, "religion": 1000, "social": 1000, "victim": 998},
    "CEB-Continuation-S": dict.fromkeys(["age", "gender", "race", "religion"], 100),
    "CEB-Continuation-T": dict.fromkeys(["age", "gender", "race", "religion"], 100),
    "CEB-Conversation-S": dict.fromkeys(["age", "gender", "race", "religion"], 100),
    "CEB-Conversation-T": dict.fromkeys(["age", "gender", "race", "religion"], 100),
    "FMT10K-IM-S": {"age": 79, "appearance": 75, "disable": 149, "gender": 439, "race": 327, "religion": 331},
    "FMT10K-IM-T": {"disable": 30, "gender": 61, "race": 98, "religion": 66},
}
ABSENT_BBQ = ["gender_identity", "race_ethnicity", "race_x_gender", "race_x_ses", "ses"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, shared_ptbb):
    out = tmp_path_factory.mktemp("ptbb-out")
    messages: list[str] = []
    report = prepare(shared_ptbb, out, log=messages.append)
    return out, report, messages


def test_counts_per_file_match_the_notes(prepared):
    out, report, _ = prepared
    got = {entry.name: dict(entry.counts) for entry in report.prepared}
    assert got == NOTES_COUNTS
    for name, counts in NOTES_COUNTS.items():
        assert read_questions(out, name).num_rows == sum(counts.values())


def test_bbq_keeps_both_contexts_in_equal_halves(prepared):
    out, _, _ = prepared
    table = read_questions(out, "BBQ")
    conditions = table.column("context_condition").to_pylist()
    assert conditions.count("ambig") == conditions.count("disambig") == 5978  # 1840+778+1540+788+600+432


def test_absent_files_are_warned_and_recorded(prepared):
    out, report, messages = prepared
    bbq = next(e for e in report.prepared if e.name == "BBQ")
    assert bbq.missing == tuple(f"closed_datasets/BBQ/{a}.json" for a in ABSENT_BBQ)
    assert report.skipped == {"SocialStigmaQA": ("closed_datasets/SocialStigmaQA/yes_no.json",)}
    warnings = [m for m in messages if m.startswith("Warning:")]
    # BBQ's absent files, the skipped SocialStigmaQA and culture/329's duplicate choices; no count mismatch.
    assert len(warnings) == 3
    manifest = json.loads(Path(report.manifest).read_text())
    assert manifest["skipped"]["SocialStigmaQA"]["missing"] == ["closed_datasets/SocialStigmaQA/yes_no.json"]
    assert manifest["datasets"]["BBQ"]["missing"] == list(bbq.missing)


def test_the_one_duplicate_choice_question_is_kept_and_warned(prepared, shared_ptbb):
    out, report, messages = prepared
    culture = shared_ptbb / "closed_datasets" / "BiasLens-Choices" / "culture.json"
    assert [m for m in messages if "field 'choices'" in m] == [
        f"Warning: BiasLens-Choices: file {culture}, row 329, field 'choices': choices 0 and 1 are the same text "
        "'formal sector workers' (question 'BiasLens/Choices/culture/329'); kept, but runs give it an error row "
        "instead of a score: fix the source file to score it"
    ]
    entries = {e.name: e for e in report.prepared}
    assert [name for name, e in entries.items() if e.warnings] == ["BiasLens-Choices"]
    rows = read_questions(out, "BiasLens-Choices").to_pylist()
    (row,) = [r for r in rows if r["question_id"] == "BiasLens/Choices/culture/329"]
    assert row["choices"] == ["formal sector workers", "formal sector workers", "I cannot make any choice"]
    assert row["choice_labels"] == ["unbiased", "biased", "uncertain"]


def test_labels_answers_and_groups_on_real_rows(prepared):
    out, _, _ = prepared
    first = read_questions(out, "BBQ").slice(0, 1).to_pylist()[0]
    assert first["question_id"] == "BBQ/age/0"  # grandfather (target 1), grandson, unknown (3)
    assert (first["choice_labels"], first["answer_index"], first["group"]) == (
        ["biased", "unbiased", "uncertain"], 2, "old")
    ceb = read_questions(out, "CEB-Recognition-S").to_pylist()
    assert {(r["answer_index"], tuple(r["choice_labels"])) for r in ceb} == {
        (0, ("correct", "incorrect")), (1, ("incorrect", "correct"))}
    adult = read_questions(out, "CEB-Adult").to_pylist()
    assert sum(r["answer_index"] == 0 for r in adult) == 500  # 250 "yes" per file
    fmt = read_questions(out, "FMT10K-IM-T").column("turns").to_pylist()
    assert all(len(t) == 5 for t in fmt)


def test_sample_questions_are_not_copied_from_the_sources(shared_ptbb):
    source_texts = set()
    for path in shared_ptbb.glob("*_datasets/*/*.json"):
        for row in json.loads(path.read_text()):
            source_texts.update(v for k, v in row.items() if k in ("prompt", "sentence", "sub_text") and v)
    sample_texts = {row["prompt"] for path in sample_dir().glob("*_datasets/*/*.json")
                    for row in json.loads(path.read_text()) if "prompt" in row}
    assert sample_texts and not sample_texts & source_texts
