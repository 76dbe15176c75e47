"""The answer stage's rows: a shard of questions -> a shard of results with an engine (no Ray).

Closed questions are scored, open ones generated. Per-question failures become the
row's ``error``; if an engine call raises for a whole batch, its questions are retried
one by one so that only the bad ones carry an error. If every question of a shard
fails that way, the shard is not written (it raises) so that a rerun retries it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from ray_bench.engines.base import ChoiceScores, Decoding, Engine, GenerateRequest, Generation, ScoreRequest
from ray_bench.errors import EngineError
from ray_bench.schema import KIND_CLOSED

if TYPE_CHECKING:
    import pyarrow as pa

Req = TypeVar("Req", ScoreRequest, GenerateRequest)
Res = TypeVar("Res", ChoiceScores, Generation)


def _check_order(requests: Sequence[Req], results: Sequence[Res]) -> None:
    got = [r.question_id for r in results]
    want = [q.question_id for q in requests]
    if got != want:
        raise EngineError(
            f"engine returned results for {len(got)} questions out of order or mismatched "
            f"(first expected {want[:1]}, got {got[:1]})"
        )


def call_isolated(
    call: Callable[[Sequence[Req]], list[Res]],
    requests: list[Req],
    on_error: Callable[[Req, str], Res],
) -> list[Res]:
    """Run ``call`` on all requests; if it raises, run each alone and keep per-request errors."""
    if not requests:
        return []
    try:
        results = call(requests)
        _check_order(requests, results)
        return results
    except Exception:  # noqa: BLE001 - isolate the failing question(s)
        pass
    out: list[Res] = []
    failures = 0
    for req in requests:
        try:
            single = call([req])
            _check_order([req], single)
            out.extend(single)
        except Exception as exc:  # noqa: BLE001 - becomes the row's error
            failures += 1
            out.append(on_error(req, f"{type(exc).__name__}: {exc}"))
    if failures == len(requests):
        raise EngineError(f"every question of the batch failed; first: {out[0].error}")
    return out


def _duplicate_choice_error(choices: Sequence[str]) -> str | None:
    """The row error of a question whose choices repeat a text, or ``None`` if all differ."""
    first_at: dict[str, int] = {}
    for i, text in enumerate(choices):
        j = first_at.setdefault(text, i)
        if j != i:
            return f"choices {j} and {i} are the same text {text!r}: the question cannot tell them apart; fix the dataset"
    return None


def _closed_rows(engine: Engine, rows: list[dict]) -> list[dict]:
    # Identical choice texts get identical scores and the argmax always picks the first:
    # such a question is never sent to the engine, so it can never count as an answer.
    refused = {}
    for r in rows:
        error = _duplicate_choice_error(r["choices"] or ())
        if error is not None:
            refused[r["question_id"]] = ChoiceScores(r["question_id"], error=error)
    requests = [
        ScoreRequest(r["question_id"], r["prompt"], tuple(r["choices"] or ()))
        for r in rows
        if r["question_id"] not in refused
    ]
    # call_isolated keeps request order, so the scored rows fill the gaps between the refused ones.
    scored = iter(call_isolated(engine.score_choices, requests, lambda q, e: ChoiceScores(q.question_id, error=e)))
    out = []
    for r in rows:
        score = refused[r["question_id"]] if r["question_id"] in refused else next(scored)
        try:
            probs = list(score.probs) or None
        except ValueError as exc:  # e.g. a choice scored with 0 tokens
            score = ChoiceScores(score.question_id, error=f"invalid scores: {exc}")
            probs = None
        ok = score.error is None
        out.append(
            {
                "choice_logprob_sums": list(score.logprob_sums) if ok else None,
                "choice_num_tokens": list(score.num_tokens) if ok else None,
                "choice_probs": probs,
                "prediction": score.prediction if ok else None,
                "error": score.error,
            }
        )
    return out


def _open_rows(engine: Engine, rows: list[dict], decoding: Decoding | None) -> list[dict]:
    requests = [
        GenerateRequest(r["question_id"], tuple(r["turns"]) if r["turns"] else (r["prompt"],), decoding=decoding)
        for r in rows
    ]
    gens = call_isolated(engine.generate, requests, lambda q, e: Generation(q.question_id, error=e))
    return [
        {
            "response": g.response,
            "responses": list(g.responses) if len(g.responses) > 1 else None,
            "num_output_tokens": g.num_output_tokens if g.error is None else None,
            "error": g.error,
        }
        for g in gens
    ]


def process_shard(engine: Engine, questions: pa.Table, model_name: str, decoding: Decoding | None = None) -> pa.Table:
    """Run ``engine`` over ``questions`` (question schema) and return result rows (result schema).

    Open questions are decoded with ``decoding`` (``None``: the engine config's). Rows come back in question order; ids are checked so a misbehaving engine cannot
    attach one question's scores to another.
    """
    import pyarrow as pa

    from ray_bench.schema import result_schema

    rows = questions.to_pylist()
    closed = [r for r in rows if r["kind"] == KIND_CLOSED]
    opened = [r for r in rows if r["kind"] != KIND_CLOSED]
    computed = dict(zip((r["question_id"] for r in closed), _closed_rows(engine, closed)))
    computed.update(zip((r["question_id"] for r in opened), _open_rows(engine, opened, decoding)))
    schema = result_schema()
    records = []
    for r in rows:
        record = dict.fromkeys(schema.names)
        record.update({k: r[k] for k in ("question_id", "dataset", "subset", "axis", "kind")})
        record["model"] = model_name
        record.update(computed[r["question_id"]])
        records.append(record)
    return pa.Table.from_pylist(records, schema=schema)
