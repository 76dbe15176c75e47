"""A small slice of the housing audit's v2 design, packaged so the demo runs without ``../shared``.

Four of the eight races (Anglo, the reference of the race contrasts; Black; Hispanic; the race
control) x the three genders, one name per group (the first name of each list with the race's
first surname in ``audit_names.xlsx``, 12 names), two eviction levels x two credit scores, one
replicate: 48 questions (each costs the demo a generation per model on CPU). Every row is the
row of the full design (``ray-bench datasets housing --design v2``) with the same
``question_id``, ``run_id``, prompt and ``source_fields`` (checked in tests/demo against the real
names table when ``../shared`` is present), so the analysis treats it exactly as the full audit,
only with less power.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

#: (race, gender, first name, surname, applicant index among the design's 240 names, first-name
#: source, surname source), in the design's order. The index fixes ``run_id`` and ``cell``.
APPLICANTS: tuple[tuple[str, str, str, str, int, str | None, str | None], ...] = (
    ("Anglo", "Man", "Charlie", "Andersen", 0, "Gaddis2017Hispanic", "Gaddis2017Hispanic"),
    ("Anglo", "Woman", "Lisa", "Andersen", 10, "Gaddis2017Hispanic", "Gaddis2017Hispanic"),
    ("Anglo", "None-Control", "Mx.", "Andersen", 20, None, "Gaddis2017Hispanic"),
    ("Black", "Man", "Jalen", "Washington", 60, "Gaddis2017Black", "Gaddis2017Black"),
    ("Black", "Woman", "Tyra", "Washington", 70, "Gaddis2017Black", "Gaddis2017Black"),
    ("Black", "None-Control", "Mx.", "Washington", 80, None, "Gaddis2017Black"),
    ("Hispanic", "Man", "Pedro", "Gonzalez", 120, "Gaddis2017Hispanic", "Gaddis2017Hispanic"),
    ("Hispanic", "Woman", "Esmeralda", "Gonzalez", 130, "Gaddis2017Hispanic", "Gaddis2017Hispanic"),
    ("Hispanic", "None-Control", "Mx.", "Gonzalez", 140, None, "Gaddis2017Hispanic"),
    # The race control's blank surname cell reads " " (the reference's fillna(" ")): "Mr.  ".
    ("None-Control", "None-Control", "Mx.", " ", 210, None, None),
    ("None-Control", "Man", "Mr.", " ", 220, None, None),
    ("None-Control", "Woman", "Ms.", " ", 230, None, None),
)
EVICTIONS = ("no record of eviction", "previously been evicted")
CREDIT_SCORES = ("500", "850")
REPLICATE = 0
#: Questions in the slice: 12 names x 2 x 2 levels.
SLICE_SIZE = len(APPLICANTS) * len(EVICTIONS) * len(CREDIT_SCORES)


def housing_slice() -> pa.Table:
    """The slice as a question table (schema-exact, balanced; see the module docstring)."""
    import pyarrow as pa

    from ray_bench.datasets import housing as h
    from ray_bench.schema import question_schema

    (_, levels1), (_, levels2) = h.VARIABLES["v2"]
    n_cells = len(levels1) * len(levels2)
    rows = []
    for race, gender, first, last, index, first_source, last_source in APPLICANTS:
        person = h.Applicant(f"{first} {last}", first, last, gender, race, first_source, last_source)
        for eviction in EVICTIONS:
            for credit in CREDIT_SCORES:
                cell = index * n_cells + levels1.index(eviction) * len(levels2) + levels2.index(credit)
                rows.append(h.design_row("v2", person, eviction, credit, cell, REPLICATE))
    table = pa.Table.from_pylist(rows, schema=question_schema())
    h.check_balanced(table)
    return table


def write_housing_slice(data_dir: str | Path) -> Path:
    """Write the slice as ``<data_dir>/Housing-v2.parquet`` (atomically) and return its path."""
    from ray_bench.datasets.housing import subset_name
    from ray_bench.datasets.tables import parquet_path, write_table_atomic

    path = parquet_path(Path(data_dir), subset_name("v2"))
    write_table_atomic(housing_slice(), path)
    return path
