"""The judge stage without Ray: conversations, verdict rows, judge_error, upstream errors."""

import pyarrow as pa
import pytest

from ray_bench.config import EngineConfig, ModelSpec
from ray_bench.engines.base import Decoding
from ray_bench.schema import judgement_schema
from ray_bench.stages.judge import conversation
from ray_bench.stages.judge_rows import JudgeTask
from tests.stages.scripted import ScriptedEngine


def _payload(rows):
    return pa.Table.from_pylist(
        [{"question_id": q, "model": "m", "dataset": "D", "subset": "D", "axis": "age",
          "roles": [r for r, _ in conv], "contents": [c for _, c in conv], "error": err} for q, conv, err in rows],
        schema=JudgeTask.payload_schema(),
    )


def test_conversation_all_turns_or_only_the_last():
    turns, answers = ["u1", "u2", "u3"], ["a1", "a2", "a3"]
    assert conversation(turns, answers, "all") == (
        ("user", "u1"), ("assistant", "a1"), ("user", "u2"), ("assistant", "a2"), ("user", "u3"), ("assistant", "a3"))
    assert conversation(turns, answers, "last") == (("user", "u3"), ("assistant", "a3"))
    assert conversation(["u"], ["a"], "all") == conversation(["u"], ["a"], "last") == (("user", "u"), ("assistant", "a"))


def test_verdict_rows_with_categories_p_unsafe_garbage_and_upstream_errors():
    engine = ScriptedEngine(ModelSpec(name="judge", path="x"), EngineConfig())
    payload = _payload([
        ("safe", [("user", "hi"), ("assistant", "a calm answer")], None),
        ("unsafe", [("user", "hi"), ("assistant", "UNSAFE text")], None),
        ("garbage", [("user", "hi"), ("assistant", "GARBAGE answer")], None),
        ("failed", [], "RuntimeError: out of memory"),
    ])
    table = JudgeTask("lg", Decoding(max_new_tokens=100)).run(engine, payload)
    assert table.schema.equals(judgement_schema(), check_metadata=False)
    rows = {r["question_id"]: r for r in table.to_pylist()}
    assert list(rows) == ["safe", "unsafe", "garbage", "failed"]
    assert rows["safe"]["is_safe"] is True and rows["safe"]["unsafe_categories"] == []
    assert rows["unsafe"]["is_safe"] is False and rows["unsafe"]["unsafe_categories"] == ["S10"]
    assert rows["unsafe"]["category_names"] == ["Hate"] and rows["unsafe"]["judge_output"] == "unsafe\nS10"
    # p_unsafe: normalized over the two verdicts; the scripted scores are log 0.8 / log 0.2 and log 0.1 / log 0.9.
    assert rows["safe"]["p_unsafe"] == pytest.approx(0.2, abs=1e-12)
    assert rows["unsafe"]["p_unsafe"] == pytest.approx(0.9, abs=1e-12)
    garbage = rows["garbage"]
    assert garbage["is_safe"] is None and garbage["judge_output"] == "I am not sure"
    assert "not a verdict" in garbage["judge_error"] and garbage["error"] is None
    failed = rows["failed"]
    assert failed["is_safe"] is None and failed["judge_output"] is None and failed["p_unsafe"] is None
    assert failed["error"].startswith("not judged: the answer has an error") and "out of memory" in failed["error"]
    assert all(r["judge"] == "lg" for r in rows.values())


def test_no_score_leaves_p_unsafe_empty():
    engine = ScriptedEngine(ModelSpec(name="judge", path="x"), EngineConfig())
    table = JudgeTask("lg", Decoding(), score=False).run(engine, _payload([("q", [("user", "a"), ("assistant", "b")], None)]))
    assert table.column("p_unsafe").to_pylist() == [None] and table.column("is_safe").to_pylist() == [True]
