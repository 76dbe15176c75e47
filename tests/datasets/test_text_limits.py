"""A runaway text in a dataset file is refused at prepare time, naming file, row and field."""

from __future__ import annotations

import pytest

from ray_bench.datasets.records import MAX_TEXT_CHARS, RowContext
from ray_bench.errors import DatasetError


def _ctx():
    return RowContext(dataset="BBQ", subset="Age", axis="Age", kind="closed", file="BBQ/Age.json", row=7)


def test_prompt_longer_than_the_limit_is_refused_with_its_location():
    with pytest.raises(DatasetError) as info:
        _ctx().string({"prompt": "x" * (MAX_TEXT_CHARS + 1)}, "prompt")
    text = str(info.value)
    assert "BBQ/Age.json" in text and "7" in text and "prompt" in text and "100,001 characters" in text
    assert _ctx().string({"prompt": "x" * MAX_TEXT_CHARS}, "prompt") == "x" * MAX_TEXT_CHARS


def test_a_long_item_of_a_list_field_is_refused():
    with pytest.raises(DatasetError, match="item 1 has"):
        _ctx().string_list({"turns": ["hi", "y" * (MAX_TEXT_CHARS + 5)]}, "turns")
