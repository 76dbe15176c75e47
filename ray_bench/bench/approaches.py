"""The ways of scoring choices that the scoring benchmark compares.

* ``reference`` - like the original benchmark: every prompt+choice is its own sequence,
  one forward at batch size 1, log-softmax over the full logits, gather the choice span.
* ``naive-batched`` - every prompt+choice is its own right-padded row, rows batched by
  the same token budget with length bucketing, full logits, gather.
* ``engine`` - :class:`ray_bench.engines.hf.HFEngine`: prompt prefixes shared across
  questions computed once (prefix-tree rows), choices packed after their prompt.
* ``engine-no-sharing`` - the same engine with ``share_prefixes: false``: each
  question's prompt once, but nothing shared between questions.
* ``vllm`` / ``vllm-uncached`` - :class:`ray_bench.engines.vllm.VllmEngine` on the same
  weights (saved and loaded by vLLM), with its default scoring method and with
  ``prompt_logprobs_uncached``; work counters from its ``scoring_stats``.

Each returns per-question log-prob sums plus the work counters the report needs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ray_bench.engines.base import ScoreRequest
from ray_bench.engines.batching import group_questions, plan_batches
from ray_bench.engines.packing import PackedRow, pack_group


@dataclass(frozen=True)
class Tokenized:
    """Token ids of one question: the prompt, and per choice the scored ids."""

    prompt_ids: list[int]
    choice_ids: list[list[int]]


@dataclass
class RunResult:
    """What one approach did on the question set.

    Attributes:
        name: Short key (``reference``, ``naive-batched``, ``engine``, ``engine-no-sharing``).
        seconds: Wall time of the timed pass.
        questions: Questions scored.
        real_tokens: Non-padding tokens run through the model.
        padded_tokens: Tokens run including padding.
        logit_rows: Positions where the LM head ran (padding included).
        forwards: Model forward calls (vLLM: requests sent; its scheduler batches them).
        sums: Per question, per choice log-prob sums.
        counts: Per question, per choice token counts.
        cached_tokens: Prompt tokens vLLM read from its prefix cache (0 for the others).
        resent: vLLM requests re-sent with cache reads off (0 for the others).
    """

    name: str
    seconds: float = 0.0
    questions: int = 0
    real_tokens: int = 0
    padded_tokens: int = 0
    logit_rows: int = 0
    forwards: int = 0
    sums: list[tuple[float, ...]] = field(default_factory=list)
    counts: list[tuple[int, ...]] = field(default_factory=list)
    cached_tokens: int = 0
    resent: int = 0


def merge(runs: Sequence[RunResult]) -> RunResult:
    """Concatenate the results of one approach over consecutive question chunks."""
    out = RunResult(runs[0].name if runs else "")
    for run in runs:
        out.seconds += run.seconds
        out.questions += run.questions
        out.real_tokens += run.real_tokens
        out.padded_tokens += run.padded_tokens
        out.logit_rows += run.logit_rows
        out.forwards += run.forwards
        out.cached_tokens += run.cached_tokens
        out.resent += run.resent
        out.sums.extend(run.sums)
        out.counts.extend(run.counts)
    return out


def sync(device: Any) -> None:
    """Wait for queued GPU work so wall times are real."""
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize()


def run_reference(model: Any, questions: Sequence[Tokenized], device: Any) -> RunResult:
    """One forward per (question, choice) at batch size 1, full log-softmax."""
    import torch

    res = RunResult("reference", questions=len(questions))
    sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        for q in questions:
            p = len(q.prompt_ids)
            sums = []
            for ids in q.choice_ids:
                seq = torch.tensor([q.prompt_ids + ids], device=device)
                logprobs = torch.log_softmax(model(input_ids=seq, use_cache=False).logits[0].float(), dim=-1)
                target = torch.tensor(ids, device=device)
                span = logprobs[p - 1 : p - 1 + len(ids)].gather(1, target[:, None])
                sums.append(float(span.double().sum()))
                res.forwards += 1
                res.real_tokens += seq.shape[1]
            res.sums.append(tuple(sums))
            res.counts.append(tuple(len(c) for c in q.choice_ids))
    sync(device)
    res.seconds = time.perf_counter() - start
    res.padded_tokens = res.logit_rows = res.real_tokens
    return res


def run_naive_batched(
    model: Any, questions: Sequence[Tokenized], max_batch_tokens: int, pad_id: int, device: Any
) -> RunResult:
    """Every prompt+choice its own right-padded row, batched by token budget, full logits."""
    import torch

    rows = [(qi, ci) for qi, q in enumerate(questions) for ci in range(len(q.choice_ids))]
    seqs = [questions[qi].prompt_ids + questions[qi].choice_ids[ci] for qi, ci in rows]
    sums: dict[tuple[int, int], float] = {}
    res = RunResult("naive-batched", questions=len(questions))
    sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in plan_batches([len(s) for s in seqs], max_batch_tokens):
            width = max(len(seqs[i]) for i in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, i in enumerate(batch):
                ids[r, : len(seqs[i])] = torch.tensor(seqs[i])
                mask[r, : len(seqs[i])] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
            for r, i in enumerate(batch):
                qi, ci = rows[i]
                p, choice = len(questions[qi].prompt_ids), questions[qi].choice_ids[ci]
                span = torch.log_softmax(logits[r, p - 1 : p - 1 + len(choice)].float(), dim=-1)
                target = torch.tensor(choice, device=span.device)
                sums[(qi, ci)] = float(span.gather(1, target[:, None]).double().sum())
            res.forwards += 1
            res.padded_tokens += len(batch) * width
    sync(device)
    res.seconds = time.perf_counter() - start
    res.real_tokens = sum(len(s) for s in seqs)
    res.logit_rows = res.padded_tokens
    for qi, q in enumerate(questions):
        res.sums.append(tuple(sums[(qi, ci)] for ci in range(len(q.choice_ids))))
        res.counts.append(tuple(len(c) for c in q.choice_ids))
    return res


def run_engine(
    engine: Any, requests: Sequence[ScoreRequest], questions: Sequence[Tokenized], name: str = "engine"
) -> RunResult:
    """The HF engine end to end (tokenization included); work counters from its packing plan."""
    sync(engine.device)
    res = _timed_scores(engine, requests, name, lambda: sync(engine.device))
    rows = engine_rows(engine, questions)
    for batch in plan_batches([row.length for row in rows], engine.batch_tokens):
        res.forwards += 1
        res.padded_tokens += len(batch) * max(rows[i].length for i in batch)
    res.real_tokens = sum(row.length for row in rows)
    res.logit_rows = sum(len(row.source_positions) for row in rows)
    return res


def _timed_scores(engine: Any, requests: Sequence[ScoreRequest], name: str, sync_after: Any = None) -> RunResult:
    """Time one ``score_choices`` call; every question must be scored."""
    from ray_bench.errors import EngineError

    res = RunResult(name, questions=len(requests))
    start = time.perf_counter()
    scores = engine.score_choices(requests)
    if sync_after is not None:
        sync_after()
    res.seconds = time.perf_counter() - start
    failed = [s for s in scores if s.error is not None]
    if failed:
        raise EngineError(f"{name} failed on {len(failed)} questions, first: {failed[0].error}")
    res.sums = [s.logprob_sums for s in scores]
    res.counts = [s.num_tokens for s in scores]
    return res


def engine_rows(engine: Any, questions: Sequence[Tokenized]) -> list[PackedRow]:
    """The packed rows the engine builds for ``questions`` (same grouping rule and options)."""
    sharing = engine.sharing
    if sharing.share_prefixes:
        groups = group_questions(
            [q.prompt_ids for q in questions],
            [sum(len(c) for c in q.choice_ids) for q in questions],
            min_shared_tokens=sharing.min_shared_tokens,
            max_row_tokens=sharing.max_row_tokens,
            pair_cost=sharing.pair_cost,
        )
    else:
        groups = [[i] for i in range(len(questions))]
    return [pack_group([questions[i].prompt_ids for i in g], [questions[i].choice_ids for i in g]) for g in groups]


def run_vllm(engine: Any, requests: Sequence[ScoreRequest], name: str) -> RunResult:
    """The vLLM engine end to end on one call; work counters from its ``scoring_stats``.

    The prefix cache is emptied first (outside the timer): it outlives calls, and hits on
    blocks left by another approach or an earlier repeat would credit this call with work
    it did not do. Like the HF engine, a call then shares only within its own questions.
    """
    engine.reset_prefix_cache()
    before = dict(engine.scoring_stats)
    res = _timed_scores(engine, requests, name)
    delta = {k: engine.scoring_stats[k] - before[k] for k in before}
    res.cached_tokens, res.resent, res.forwards = delta["cached_tokens"], delta["resent"], delta["requests"]
    # vLLM pads nothing; V1's prompt logprobs run the LM head at every computed position
    # (with token_ids on Model Runner V2 this is an upper bound).
    res.real_tokens = res.padded_tokens = res.logit_rows = delta["prompt_tokens"] - delta["cached_tokens"]
    return res
