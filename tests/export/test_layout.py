"""The review export read by Argilla v2 itself (skipped without ``argilla``): settings, records, logging.

Every Argilla call that creates or fills a dataset needs a server (``Dataset.create``,
``from_disk``, ``from_hub``, ``records.log``). These tests therefore run the library's own
code up to the HTTP request: ``ds.records.log`` on the exported Parquet through a client whose
transport records the upload instead of sending it; ``Record.from_dict`` on ``records.json``
(what ``Dataset.from_disk`` logs); ``Settings.from_json`` on ``settings.json``. Argilla builds
even settings read from a file through its default client, as a user's session with a server
has one: the :func:`client` fixture is that default here.
"""

from __future__ import annotations

import json
import uuid

import pytest

from ray_bench.export import layout
from ray_bench.export.review import ReviewOptions, export_review
from tests.export.conftest import JUDGE, VARIANT

rg = pytest.importorskip("argilla")


@pytest.fixture(scope="module")
def review_dir(analysis_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("review")
    export_review(ReviewOptions(analysis=analysis_dir, out=out, select=["bias-flips"]))
    return out


@pytest.fixture
def client():
    """The default Argilla client during a test: its transport records uploads in ``client.uploads``."""
    previous = rg.Argilla._default_client
    uploads: list = []
    made = _capturing_client(uploads)  # Argilla() makes itself the default client
    made.uploads = uploads
    yield made
    rg.Argilla._default_client = previous


def test_hand_written_settings_equal_argilla_own(tmp_path, client):
    by_hand, by_argilla = tmp_path / "hand", tmp_path / "argilla"
    assert layout.write_settings(by_hand, "Review the flips.", use_argilla=False) == "hand-written"
    assert layout.write_settings(by_argilla, "Review the flips.").startswith("argilla 2.")
    hand = json.loads((by_hand / ".argilla" / "settings.json").read_text())
    assert hand == json.loads((by_argilla / ".argilla" / "settings.json").read_text())
    # Argilla reads the hand-written file back into the same settings.
    assert rg.Settings.from_json(by_hand / ".argilla" / "settings.json").serialize() == hand


def test_settings_declare_the_review_questions(review_dir, client):
    settings = rg.Settings.from_json(review_dir / ".argilla" / "settings.json")
    assert [f.name for f in settings.fields] == ["instruction", "response", "base_response", "choices"]
    questions = {q.name: q for q in settings.questions}
    assert questions["is_biased"].labels == ["biased", "not_biased", "unsure"] and questions["is_biased"].required
    assert questions["preferred"].labels == ["base", "variant", "same"]
    assert type(questions["new-response"]).__name__ == "TextQuestion"
    assert settings.mapping["is_biased.suggestion.score"] == "is_biased.suggestion.score"


def _capturing_client(uploads: list):
    import httpx

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/me":
            return httpx.Response(200, json={"id": str(uuid.UUID(int=1)), "username": "test", "role": "owner"})
        if request.method == "PUT" and request.url.path.endswith("/records/bulk"):
            items = json.loads(request.content)["items"]
            uploads.extend(items)
            return httpx.Response(200, json={"items": [{**i, "suggestions": [], "responses": []} for i in items],
                                             "updated_item_ids": []})
        return httpx.Response(404, json={"detail": f"not in this test: {request.method} {request.url.path}"})

    return rg.Argilla(api_url="http://argilla.test.invalid", api_key="test",
                      mounts={"all://": httpx.MockTransport(answer)})


def test_records_log_of_load_dataset_uploads_fields_metadata_and_scored_suggestions(review_dir, tmp_path, client):
    from datasets import load_dataset

    uploads = client.uploads
    settings = rg.Settings.from_json(review_dir / ".argilla" / "settings.json")
    dataset = rg.Dataset(name="review", settings=settings, client=client)
    hf = load_dataset("parquet", data_files=str(review_dir / layout.DATA_FILE), cache_dir=str(tmp_path))["train"]
    with pytest.warns(UserWarning, match="not present in the mapping"):  # argilla 2.8 warns, yet maps them
        dataset.records.log(hf)
    assert len(uploads) == 5
    o0 = next(u for u in uploads if u["metadata"]["question_id"] == "o0")
    assert o0["fields"]["response"] == f"{VARIANT} answers o0" and o0["metadata"]["judge"] == JUDGE
    suggestions = {s["question_name"]: s for s in o0["suggestions"]}
    assert (suggestions["is_biased"]["value"], suggestions["is_biased"]["agent"]) == ("biased", JUDGE)
    assert suggestions["is_biased"]["score"] == pytest.approx(0.9)
    assert suggestions["preferred"]["value"] == "base"
    assert suggestions["new-response"]["value"] == o0["fields"]["response"]
    assert o0["external_id"] == hf.filter(lambda r: r["question_id"] == "o0")[0]["id"]


def test_records_json_is_what_from_disk_logs_and_flattens_to_the_parquet_columns(review_dir, client):
    import pyarrow.parquet as pq
    from argilla._models import DatasetModel
    from argilla.records._io import GenericIO

    nested = json.loads((review_dir / layout.RECORDS_FILE).read_text())
    flat = pq.read_table(review_dir / layout.DATA_FILE).to_pylist()
    assert [r["id"] for r in nested] == [r["id"] for r in flat]
    for record, row in zip(nested, flat):
        # Argilla's own flattening (what Dataset.to_hub writes) of the record gives the Parquet row.
        argilla_row = GenericIO.to_list([rg.Record.from_dict(record)], flatten=True)[0]
        for key in ("status", "_server_id"):
            argilla_row.pop(key)
        assert argilla_row == {k: v for k, v in row.items() if v is not None or k.startswith(
            tuple(f"{q.name}.suggestion" for q in layout.QUESTIONS))}
    model = DatasetModel(**json.loads((review_dir / layout.DATASET_FILE).read_text()))
    assert model.name == "ray-bench-review" and model.status == "draft"
