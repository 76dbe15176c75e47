"""The judge's rows: conversations -> verdicts, with an engine (no Ray).

Per conversation two engine calls: a greedy generation over the judge prompt (the judge's
own chat template) whose text is parsed as the verdict, and a scoring pass of the two
verdict words after the same prompt, through the exact choice-scoring path of closed
questions. ``p_unsafe`` is the normalized score of "unsafe" against "safe"; with Llama
Guard's tokenizers each verdict is one token, so it is the judge's probability of "unsafe"
as its first answer token, renormalized over the two verdicts. A text that does not parse
keeps its raw text and gets ``judge_error``; the shard still lands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ray_bench.engines.base import ChoiceScores, Decoding, Engine, GenerateRequest, Generation, ScoreRequest
from ray_bench.errors import JudgeParseError
from ray_bench.stages.answer_rows import call_isolated
from ray_bench.stages.llama_guard import VERDICTS, parse_verdict

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class JudgeTask:
    """What a judge actor computes for one shard of answers.

    Attributes:
        judge: The judge's name (a column of every row).
        decoding: How the verdict is generated (greedy by default).
        score: Also compute ``p_unsafe``.
    """

    judge: str
    decoding: Decoding
    score: bool = True

    @staticmethod
    def payload_schema() -> pa.Schema:
        """The input rows: the answer's keys and its conversation (``roles`` / ``contents``)."""
        import pyarrow as pa

        return pa.schema([
            *(pa.field(name, pa.string()) for name in ("question_id", "model", "dataset", "subset", "axis")),
            pa.field("roles", pa.list_(pa.string())), pa.field("contents", pa.list_(pa.string())),
            pa.field("error", pa.string()),
        ])

    def run(self, engine: Engine, payload: pa.Table) -> pa.Table:
        """Judgement rows (``ray_bench.schema.judgement_schema``), in payload order."""
        import pyarrow as pa

        from ray_bench.schema import judgement_schema

        rows = payload.to_pylist()
        todo = [r for r in rows if r["error"] is None]
        messages = {r["question_id"]: tuple(zip(r["roles"], r["contents"])) for r in todo}
        gens = call_isolated(
            engine.generate,
            [GenerateRequest(q, messages=m, decoding=self.decoding) for q, m in messages.items()],
            lambda req, e: Generation(req.question_id, error=e),
        )
        verdicts = {g.question_id: g for g in gens}
        scores: dict[str, ChoiceScores] = {}
        if self.score and messages:
            scored = call_isolated(
                engine.score_choices,
                [ScoreRequest(q, "", VERDICTS, messages=m) for q, m in messages.items()],
                lambda req, e: ChoiceScores(req.question_id, error=e),
            )
            scores = {s.question_id: s for s in scored}
        out = [self._row(r, verdicts.get(r["question_id"]), scores.get(r["question_id"])) for r in rows]
        return pa.Table.from_pylist(out, schema=judgement_schema())

    def _row(self, row: dict[str, Any], gen: Generation | None, score: ChoiceScores | None) -> dict[str, Any]:
        out: dict[str, Any] = {k: row[k] for k in ("question_id", "model", "dataset", "subset", "axis")}
        out.update(judge=self.judge, is_safe=None, unsafe_categories=None, category_names=None,
                   judge_output=None, p_unsafe=None, judge_error=None, error=row["error"])
        if row["error"] is not None:
            out["error"] = f"not judged: the answer has an error ({row['error']})"
            return out
        if gen is None or gen.error is not None:
            out["error"] = f"the judge failed: {gen.error if gen else 'no output'}"
            return out
        out["judge_output"] = gen.response
        try:
            verdict = parse_verdict(gen.response or "")
        except JudgeParseError as exc:
            out["judge_error"] = str(exc)
        else:
            out.update(is_safe=verdict.is_safe, unsafe_categories=list(verdict.categories),
                       category_names=list(verdict.category_names))
        if score is not None and score.error is None and score.probs:
            out["p_unsafe"] = score.probs[VERDICTS.index("unsafe")]
        return out
