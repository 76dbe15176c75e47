"""Shard processing and planning without Ray."""

import math

import pyarrow as pa
import pytest

from ray_bench.config import EngineConfig, ModelSpec
from ray_bench.engines.base import ChoiceScores, create_engine
from ray_bench.errors import EngineError
from ray_bench.stages.plan import fingerprint_ids, plan_dataset
from ray_bench.stages.answer_rows import process_shard
from ray_bench.schema import result_schema


def _dummy(**options):
    return create_engine(ModelSpec(name="m", path="/nowhere/m"), EngineConfig(name="dummy", options=options))


def test_process_shard_rows_in_order_with_probs(questions):
    table = process_shard(_dummy(), questions, "m")
    assert table.schema.equals(result_schema(), check_metadata=False)
    assert table.column("question_id").to_pylist() == questions.column("question_id").to_pylist()
    for row in table.to_pylist():
        if row["kind"] == "closed":
            sums, counts = row["choice_logprob_sums"], row["choice_num_tokens"]
            means = [s / n for s, n in zip(sums, counts)]
            expected = [math.exp(m) / sum(math.exp(x) for x in means) for m in means]
            assert row["choice_probs"] == pytest.approx(expected, rel=1e-12)
            assert row["prediction"] == max(range(3), key=expected.__getitem__)
            assert row["response"] is None and row["error"] is None
        else:
            assert row["response"].startswith("[m] reply") and row["choice_probs"] is None
    by_id = {r["question_id"]: r for r in table.to_pylist()}
    assert len(by_id["toy/o/1"]["responses"]) == 2 and by_id["toy/o/0"]["responses"] is None


def test_question_error_lands_in_its_row(questions):
    table = process_shard(_dummy(fail_on=["toy/c/1", "toy/o/0"]), questions, "m")
    errors = dict(zip(table.column("question_id").to_pylist(), table.column("error").to_pylist()))
    assert "injected failure" in errors["toy/c/1"] and "injected failure" in errors["toy/o/0"]
    assert sum(e is not None for e in errors.values()) == 2


class _RaisesOnOne:
    """Engine whose batch call raises when a poisoned question is in it."""

    def score_choices(self, requests):
        if any(r.question_id == "toy/c/3" for r in requests):
            raise RuntimeError("CUDA error: device-side assert")
        return [ChoiceScores(r.question_id, tuple(-1.0 for _ in r.choices), tuple(1 for _ in r.choices)) for r in requests]

    def generate(self, requests):
        raise RuntimeError("no generation")


def test_batch_exception_is_isolated_to_the_bad_question(questions):
    closed = questions.slice(0, 5)
    table = process_shard(_RaisesOnOne(), closed, "m")
    errors = table.column("error").to_pylist()
    assert [e is not None for e in errors] == [False, False, False, True, False]
    assert "device-side assert" in errors[3]


def test_shard_where_everything_fails_raises(questions):
    with pytest.raises(EngineError, match="every question"):
        process_shard(_RaisesOnOne(), questions.slice(5, 2), "m")


class _Recording:
    """Wraps an engine and records which question ids reach ``score_choices``."""

    def __init__(self, engine):
        self.engine, self.scored = engine, []

    def score_choices(self, requests):
        self.scored.extend(r.question_id for r in requests)
        return self.engine.score_choices(requests)

    def generate(self, requests):
        return self.engine.generate(requests)


def _with_choices(questions, **choices_by_id):
    rows = questions.to_pylist()
    for row in rows:
        row["choices"] = choices_by_id.get(row["question_id"], row["choices"])
    return pa.Table.from_pylist(rows, schema=questions.schema)


def test_duplicate_choices_get_an_error_row_and_never_reach_the_engine(questions):
    shard = _with_choices(questions, **{"toy/c/1": ["YES", "YES", "Cannot be determined"],
                                        "toy/c/3": ["A", "B", "A"]})
    engine = _Recording(_dummy())
    by_id = {r["question_id"]: r for r in process_shard(engine, shard, "m").to_pylist()}
    assert by_id["toy/c/1"]["error"] == (
        "choices 0 and 1 are the same text 'YES': the question cannot tell them apart; fix the dataset")
    assert by_id["toy/c/3"]["error"] == (
        "choices 0 and 2 are the same text 'A': the question cannot tell them apart; fix the dataset")
    for qid in ("toy/c/1", "toy/c/3"):
        row = by_id[qid]
        assert (row["prediction"], row["choice_probs"], row["choice_logprob_sums"], row["choice_num_tokens"]) == (
            None, None, None, None)
    assert engine.scored == ["toy/c/0", "toy/c/2", "toy/c/4"]
    # The other rows are what the same engine gives on the untouched shard, in question order.
    reference = {r["question_id"]: r for r in process_shard(_dummy(), questions, "m").to_pylist()}
    assert list(by_id) == list(reference)
    for qid in reference.keys() - {"toy/c/1", "toy/c/3"}:
        assert by_id[qid] == reference[qid] and by_id[qid]["error"] is None


def test_shard_of_only_duplicate_choice_questions_is_written_with_error_rows(questions):
    # Not an engine failure: a rerun cannot fix it, so the shard is not refused the way an all-failed one is.
    closed = _with_choices(questions.slice(0, 2), **{"toy/c/0": ["x", "x"], "toy/c/1": ["y", "y", "z"]})
    engine = _Recording(_dummy())
    table = process_shard(engine, closed, "m")
    assert engine.scored == []
    assert [e.split(":")[0] for e in table.column("error").to_pylist()] == [
        "choices 0 and 1 are the same text 'x'", "choices 0 and 1 are the same text 'y'"]


def test_plan_covers_every_question_once():
    ids = [f"q{i}" for i in range(23)]
    shards = plan_dataset("m", "D", ids, 10)
    assert [(s.start, s.stop) for s in shards] == [(0, 10), (10, 20), (20, 23)]
    assert [s.key for s in shards][-1] == "m/D/shard-00002"
    assert shards[1].fingerprint == fingerprint_ids(ids[10:20]) != shards[0].fingerprint
    assert plan_dataset("m", "D", ids[:10], 10)[0].fingerprint == shards[0].fingerprint
