"""Question tables built by hand for runner tests, and a local Ray instance to run them on."""

import json
import os

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


def start_local_ray(num_cpus, num_gpus=0, tag="rb", object_store_mib=256):
    """A local Ray instance for tests (no dashboard, no auth); call ``ray.shutdown()`` after."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # AF_UNIX paths must stay short.
    ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
             object_store_memory=object_store_mib * 1024**2, _temp_dir=f"/tmp/{tag}{os.getpid()}", log_to_driver=False)
    return ray


@pytest.fixture
def toy_data(monkeypatch):
    """Two toy datasets the driver loads instead of prepared files: ToyA 6 closed, ToyB 4 closed + 2 open."""
    from ray_bench.runner import driver

    tables = {"ToyA": make_questions(6, 0, "ToyA", "a"), "ToyB": make_questions(4, 2, "ToyB", "b")}
    monkeypatch.setattr(driver, "load_questions", lambda config: dict(tables))
    return tables
