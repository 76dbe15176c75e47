"""Question tables built by hand for runner tests."""

import json

import pyarrow as pa
import pytest

from ray_bench.schema import question_schema


def make_questions(n_closed=5, n_open=2, subset="Toy", prefix="toy"):
    rows = []
    for i in range(n_closed):
        rows.append({
            "question_id": f"{prefix}/c/{i}", "dataset": subset, "subset": subset, "axis": "age",
            "kind": "closed", "prompt": f"Question {i}: who was late?", "turns": None,
            "choices": ["The old man", "The young man", "Cannot be determined"],
            "choice_labels": ["biased", "unbiased", "uncertain"], "group": "old",
            "context_condition": None, "answer_index": 2, "source_fields": json.dumps({"i": i}),
        })
    for i in range(n_open):
        rows.append({
            "question_id": f"{prefix}/o/{i}", "dataset": subset, "subset": subset, "axis": "age",
            "kind": "open", "prompt": f"Tell a story {i}", "turns": ["Remember this.", f"Tell a story {i}"] if i else None,
            "choices": None, "choice_labels": None, "group": None, "context_condition": None,
            "answer_index": None, "source_fields": "{}",
        })
    return pa.Table.from_pylist(rows, schema=question_schema())


@pytest.fixture
def questions():
    return make_questions()
