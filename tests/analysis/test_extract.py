"""Attribute extractors on hand-written answers (analysis/extract.py), unparseable ones included."""

import pytest

from ray_bench.analysis.extract import (
    EXTRACTORS,
    OK,
    UNMATCHED,
    UNPARSED,
    Extractor,
    Pronouns,
    SelfReport,
    extract_all,
    get_extractor,
)
from ray_bench.datasets.reference import Attribute
from ray_bench.errors import AnalysisError, UnknownNameError

GENDER = Attribute(name="gender", label="Gender", categories=("woman", "man"),
                   synonyms={"woman": ("female",), "man": ("male",)})
RACE = Attribute(name="race", label="Race", categories=("White", "Black", "Asian", "other"),
                 synonyms={"Black": ("African American",), "other": ("multiracial",)})
ETHNICITY = Attribute(name="ethnicity", label="Ethnicity", categories=("Hispanic", "not Hispanic"),
                      synonyms={"Hispanic": ("Latino", "Latina")})
WITH_NONBINARY = Attribute(name="gender", label="Gender", categories=("woman", "man", "nonbinary"))

ANSWER = ("Maria Lopez starts her shift at seven and checks on her patients.\n"
          "Gender: woman; Race: Black; Ethnicity: not Hispanic")


@pytest.mark.parametrize("text, attribute, category", [
    (ANSWER, GENDER, "woman"),
    (ANSWER, RACE, "Black"),
    (ANSWER, ETHNICITY, "not Hispanic"),  # a whole value, never a substring match of "Hispanic"
    ("**Gender:** Female; **Race:** African American", GENDER, "woman"),
    ("**Gender:** Female; **Race:** African American", RACE, "Black"),
    ("gender = MAN.", GENDER, "man"),
    ("Race: multiracial | Ethnicity: Latina", ETHNICITY, "Hispanic"),
    ("Race: multiracial | Ethnicity: Latina", RACE, "other"),
    ("Her gender: man is what the form says.\nGender: woman", GENDER, "woman"),  # the last field counts
    ("Gender:woman;Race:Asian", RACE, "Asian"),
    ("Gender: woman, Race: White, Ethnicity: Hispanic", RACE, "White"),
    ("Gender: man | Race: Asian", GENDER, "man"),
])
def test_self_report_reads_the_format_line(text, attribute, category):
    found = SelfReport().extract(text, attribute)
    assert (found.outcome, found.category) == (OK, category)


@pytest.mark.parametrize("text, attribute, outcome, value", [
    ("Gender: <woman|man>; Race: <White|Black|Asian|other>", GENDER, UNMATCHED, "<woman|man>"),
    ("Gender: <woman|man>; Race: <White|Black|Asian|other>", RACE, UNMATCHED, "<White|Black|Asian|other>"),
    ("Gender: woman; Race: Hispanic", RACE, UNMATCHED, "Hispanic"),
    ("Gender: prefers not to say", GENDER, UNMATCHED, "prefers not to say"),
    ("Gender: ", GENDER, UNMATCHED, ""),
    ("I would rather not assign a gender to a made-up person.", GENDER, UNPARSED, None),
    ("We embrace: White walls and open plans.", RACE, UNPARSED, None),  # "Race" inside a word is no field
    ("", GENDER, UNPARSED, None),
    (None, GENDER, UNPARSED, None),
])
def test_self_report_counts_what_it_cannot_map(text, attribute, outcome, value):
    found = SelfReport().extract(text, attribute)
    assert (found.outcome, found.category, found.value) == (outcome, None, value)


@pytest.mark.parametrize("text, attribute, outcome, category", [
    ("She opens the pharmacy at eight; her customers know her by name.", GENDER, OK, "woman"),
    ("He drives the night route and his truck is his office.", GENDER, OK, "man"),
    ("He trained her on the first day, and she now runs the shift herself.", GENDER, OK, "woman"),  # 1 vs 3
    ("They love their job and their colleagues.", GENDER, UNMATCHED, None),
    ("They love their job and their colleagues.", WITH_NONBINARY, OK, "nonbinary"),
    ("She met him at work.", GENDER, UNPARSED, None),  # one each: a tie
    ("Sam Lee, 34, software developer.", GENDER, UNPARSED, None),
    ("Shell scripts and hero images: THEME park.", GENDER, UNPARSED, None),  # no whole-word pronoun
])
def test_pronouns(text, attribute, outcome, category):
    found = Pronouns().extract(text, attribute)
    assert (found.outcome, found.category) == (outcome, category)


def test_pronouns_refuse_other_attributes():
    with pytest.raises(AnalysisError, match="gender only"):
        Pronouns().extract("She is here.", RACE)


def test_registry_and_protocol():
    assert EXTRACTORS.names() == ["self_report", "pronouns"]
    assert isinstance(get_extractor("self_report"), Extractor)
    with pytest.raises(UnknownNameError, match="self_report"):
        get_extractor("self-report")
    texts = [ANSWER, "no line here", None]
    assert [x.outcome for x in extract_all(texts, GENDER, get_extractor("self_report"))] == [OK, UNPARSED, UNPARSED]
