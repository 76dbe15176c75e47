"""The demo's packaged housing slice is a part of the real v2 design, row for row."""

from __future__ import annotations

import json

import pytest

from ray_bench.datasets.housing import check_balanced, default_source
from ray_bench.demo.housing import APPLICANTS, SLICE_SIZE, housing_slice

NAMES = default_source() / "audit_names.xlsx"


def test_the_slice_is_balanced_and_covers_every_gender_of_its_races():
    table = housing_slice()
    check_balanced(table)  # raises on any unbalanced factor pair
    fields = [json.loads(s) for s in table.column("source_fields").to_pylist()]
    assert table.num_rows == SLICE_SIZE == 48 and len(set(table.column("question_id").to_pylist())) == 48
    assert {(f["race"], f["gender"]) for f in fields} == {(a[0], a[1]) for a in APPLICANTS}
    assert len({(a[0], a[1]) for a in APPLICANTS}) == 4 * 3


@pytest.mark.shared
@pytest.mark.skipif(not NAMES.is_file(), reason="needs ../shared/datasets/housing/audit_names.xlsx")
def test_every_slice_row_is_the_real_design_row():
    from ray_bench.datasets.housing import housing_design

    full = {row["question_id"]: row for row in housing_design("v2", NAMES).to_pylist()}
    for row in housing_slice().to_pylist():
        assert row == full[row["question_id"]], row["question_id"]
