"""Llama Guard 3/4 verdict parsing: the model cards' formats parse, anything else raises."""

import pytest

from ray_bench.errors import JudgeParseError, RayBenchError
from ray_bench.stages.llama_guard import CATEGORIES, VERDICTS, Verdict, parse_verdict


@pytest.mark.parametrize(
    "text, expected",
    [
        ("safe", Verdict(True)),
        ("\n\nsafe", Verdict(True)),  # Llama Guard 4 style
        ("safe<|eot_id|>", Verdict(True)),  # Llama Guard 3, special tokens kept
        ("  \n safe \n\n", Verdict(True)),
        ("SAFE", Verdict(True)),
        ("unsafe\nS10", Verdict(False, ("S10",))),
        ("unsafe\nS1,S10", Verdict(False, ("S1", "S10"))),
        ("unsafe\nS2, S9 ,s14", Verdict(False, ("S2", "S9", "S14"))),
        ("unsafe\nS10,S1,S10", Verdict(False, ("S10", "S1"))),  # order kept, duplicate dropped
        ("\n\nunsafe\nS9<|eot|>", Verdict(False, ("S9",))),  # Llama Guard 4 style
        ("  unsafe  \n\n  S5  \n ", Verdict(False, ("S5",))),
        ("unsafe\nS11<|eot_id|>\n", Verdict(False, ("S11",))),
        ("safe</s>", Verdict(True)),
        ("safe<|end_of_text|>", Verdict(True)),
    ],
)
def test_parses_model_card_formats(text, expected):
    assert parse_verdict(text) == expected


def test_category_names_follow_codes():
    assert parse_verdict("unsafe\nS1,S10").category_names == ("Violent Crimes", "Hate")
    assert parse_verdict("unsafe\ns14, S11").category_names == (
        "Code Interpreter Abuse",
        "Suicide & Self-Harm",
    )
    assert parse_verdict("safe").category_names == ()


def test_categories_and_verdicts():
    assert list(CATEGORIES) == [f"S{i}" for i in range(1, 15)]
    assert CATEGORIES["S10"] == "Hate"
    assert CATEGORIES["S4"] == "Child Sexual Exploitation"
    assert VERDICTS == ("safe", "unsafe")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "<|eot_id|>",
        "I cannot help with that",
        "unsafe",
        "unsafe<|eot_id|>",
        "unsafe\nS15",
        "unsafe\nS0",
        "unsafe\nHate",
        "unsafe\nS1,",
        "unsafe\nS1 S10",
        "safe\nS1",
        "unsafe\nS1\nmore",
        "Safe.",
        "The response is safe",
    ],
)
def test_garbage_raises_with_text_in_message(text):
    with pytest.raises(JudgeParseError) as info:
        parse_verdict(text)
    assert repr(text) in str(info.value)
    assert "expected" in str(info.value)
    assert isinstance(info.value, RayBenchError)


def test_long_text_is_truncated_in_message():
    text = "x" * 500
    with pytest.raises(JudgeParseError) as info:
        parse_verdict(text)
    message = str(info.value)
    assert repr(text)[:100] in message
    assert repr(text) not in message
