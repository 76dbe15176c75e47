"""The datasets stage: 13 bias datasets (17 directories) -> one Parquet table per directory.

Typical use::

    from ray_bench.datasets import prepare, read_questions, resolve_names

    prepare("sample", "data/")                       # or a directory / URL in the repackaged layout
    for name in resolve_names(["CEB-Recognition"]):  # -> CEB-Recognition-S, CEB-Recognition-T
        table = read_questions("data/", name)        # pyarrow.Table, schema.question_schema()

Importing this package does not import pyarrow; the functions that need it do.
"""

from ray_bench.datasets.iat import IAT_STIMULI_URL
from ray_bench.datasets.prepare import MANIFEST_NAME, PreparedDataset, PrepareReport, prepare
from ray_bench.datasets.records import Question
from ray_bench.datasets.sources import PTBB_BASE_URL, cache_dir, sample_dir
from ray_bench.datasets.specs import (
    BBQ_AMBIGUOUS_TOTAL,
    DATASETS,
    DatasetSpec,
    dataset_names,
    family_names,
    get_spec,
    resolve_names,
)
from ray_bench.datasets.tables import parquet_path, prepared_count, read_questions

__all__ = [
    "BBQ_AMBIGUOUS_TOTAL",
    "DATASETS",
    "IAT_STIMULI_URL",
    "MANIFEST_NAME",
    "PTBB_BASE_URL",
    "DatasetSpec",
    "PrepareReport",
    "PreparedDataset",
    "Question",
    "cache_dir",
    "dataset_names",
    "family_names",
    "get_spec",
    "parquet_path",
    "prepare",
    "prepared_count",
    "read_questions",
    "resolve_names",
    "sample_dir",
]
