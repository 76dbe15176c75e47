"""Reference tables (datasets/reference): validation errors name file, row and field; the shipped BLS table."""

import copy
import json

import pytest

from ray_bench.datasets.reference import (
    DEFAULT_REFERENCE,
    load_reference,
    reference_from_dict,
    shipped_references,
)
from ray_bench.errors import ConfigError, DatasetError, UnknownNameError

VALID = {
    "schema_version": 1, "name": "toy", "version": "1", "title": "Toy table", "year": 2024, "illustrative": True,
    "source": {"citation": "Made up for tests", "url": "https://example.org"},
    "attributes": [{"name": "gender", "label": "Gender", "categories": ["woman", "man"],
                    "synonyms": {"woman": ["female"]}}],
    "occupations": [
        {"name": "nurse", "employment": 30.0, "shares": {"gender": {"woman": 0.9, "man": 0.1}}},
        {"name": "electrician", "employment": 10.0, "shares": {"gender": {"woman": 0.02, "man": 0.98}}},
    ],
}


def _broken(edit):
    data = copy.deepcopy(VALID)
    edit(data)
    return data


def _error(data) -> str:
    with pytest.raises(DatasetError) as info:
        reference_from_dict(data, file="toy.json")
    return str(info.value)


def test_valid_table_reads_with_shares_weights_and_articles():
    table = reference_from_dict(VALID)
    assert table.shares("gender").tolist() == [[0.9, 0.1], [0.02, 0.98]]
    assert table.weights().tolist() == [30.0, 10.0]
    assert [o.with_article for o in table.occupations] == ["a nurse", "an electrician"]
    assert reference_from_dict(json.loads(table.to_json())) == table


@pytest.mark.parametrize("edit, expected", [
    (lambda d: d.update(schema_version=2), "file toy.json, field 'schema_version': unsupported schema_version 2"),
    (lambda d: d["occupations"][1]["shares"]["gender"].update(woman=1.2, man=-0.2),
     "file toy.json, row 1, field 'shares.gender.woman': occupation 'electrician': share 1.2 is not in [0, 1]"),
    (lambda d: d["occupations"][0]["shares"]["gender"].update(man=0.2),
     "file toy.json, row 0, field 'shares.gender': occupation 'nurse': gender shares sum to 1.1000, not 1"),
    (lambda d: d["occupations"][1]["shares"]["gender"].pop("man"),
     "file toy.json, row 1, field 'shares.gender': occupation 'electrician' has gender categories ['woman'], "
     "expected ['woman', 'man']"),
    (lambda d: d["occupations"][0].update(shares={}),
     "file toy.json, row 0, field 'shares': occupation 'nurse' has shares for [], the table's attributes are ['gender']"),
    (lambda d: d["occupations"][1].update(name="Nurse"), "file toy.json, row 1, field 'name': occupation 'Nurse' appears twice"),
    (lambda d: d["occupations"][1].pop("employment"),
     "file toy.json, row 1, field 'employment': occupation 'electrician' has no employment, but 1 of 2"),
    (lambda d: d["occupations"][0].pop("shares"), "file toy.json, row 0, field 'shares': occupation 'nurse': Field required"),
    (lambda d: d["occupations"][1].update(employment=0), "file toy.json, row 1, field 'employment': occupation 'electrician': "
     "Input should be greater than 0"),
    (lambda d: d["occupations"][0].update(salary=1), "file toy.json, row 0, field 'salary': occupation 'nurse': Extra inputs are not permitted"),
    (lambda d: d["source"].pop("url"), "file toy.json, field 'source.url': Field required"),
    (lambda d: d["attributes"][0]["synonyms"].update(man=["Female"]),
     "file toy.json, field 'attributes.gender.synonyms': answer 'Female' would mean both 'woman' and 'man'"),
    (lambda d: d["attributes"][0]["synonyms"].update(nonbinary=["nb"]),
     "file toy.json, field 'attributes.gender.synonyms': synonyms name 'nonbinary', not a category of ['woman', 'man']"),
    (lambda d: d["attributes"].append(dict(d["attributes"][0])), "file toy.json, field 'attributes': attribute names repeat"),
])
def test_invalid_tables_name_file_row_and_field(edit, expected):
    assert _error(_broken(edit)).startswith(expected)


def test_files_and_names(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetError, match=f"file {bad}: cannot read the reference table"):
        load_reference(bad)
    with pytest.raises(ConfigError, match="neither a file nor a shipped table") as info:
        load_reference(tmp_path / "missing.json")
    assert DEFAULT_REFERENCE in info.value.hint
    with pytest.raises(DatasetError, match="a reference table is a JSON object"):
        reference_from_dict([1, 2])
    good = tmp_path / "toy.json"
    good.write_text(json.dumps(VALID))
    assert load_reference(good).name == "toy"
    with pytest.raises(UnknownNameError, match="ethnicity"):
        load_reference(good).attribute("ethnicity")


def test_shipped_bls_table_matches_its_published_numbers():
    assert DEFAULT_REFERENCE in shipped_references()
    table = load_reference()
    assert (table.year, table.illustrative) == (2022, False)
    assert table.source.url == "https://www.bls.gov/cps/aa2022/cpsaat11.htm" and "Transcribed" in table.source.transcription
    assert [a.name for a in table.attributes] == ["gender", "race", "ethnicity"]
    assert len(table.occupations) == 20
    for occ in table.occupations:
        pub = occ.published
        assert occ.employment == pub["total_employed"]
        assert occ.shares["gender"]["woman"] == pytest.approx(pub["women"] / 100)
        assert occ.shares["gender"]["man"] == pytest.approx(1 - pub["women"] / 100)
        race = occ.shares["race"]
        assert (race["White"], race["Black"], race["Asian"]) == pytest.approx(
            (pub["white"] / 100, pub["black"] / 100, pub["asian"] / 100))
        assert race["other"] == pytest.approx(1 - (pub["white"] + pub["black"] + pub["asian"]) / 100) and race["other"] >= 0
        assert occ.shares["ethnicity"]["Hispanic"] == pytest.approx(pub["hispanic"] / 100)
    nurse = table.occupations[table.occupation_names().index("registered nurse")]
    assert nurse.title == "Registered nurses" and nurse.published["women"] == 87.9  # BLS 2022: 87.9% women
