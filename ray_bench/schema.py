"""The single source of every Arrow schema in ray-bench.

Questions (one Parquet file per dataset directory) and results (one Parquet file per
shard) are defined here and nowhere else. ``pyarrow`` is imported lazily so that
``import ray_bench`` stays light.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

SCHEMA_VERSION = 1

#: Values of the ``kind`` column.
KIND_CLOSED = "closed"
KIND_OPEN = "open"
KINDS = (KIND_CLOSED, KIND_OPEN)

#: Allowed entries of ``choice_labels`` (per-choice semantics used by the analysis).
CHOICE_LABELS = frozenset(
    {
        "biased",
        "unbiased",
        "uncertain",
        "biased_1",
        "biased_2",
        "unbiased_1",
        "unbiased_2",
        "stereotype",
        "anti-stereotype",
        "unrelated",
        "correct",
        "incorrect",
    }
)

#: Columns every question row must have a non-null value for.
QUESTION_REQUIRED = ("question_id", "dataset", "subset", "axis", "kind", "prompt")


@cache
def question_schema() -> pa.Schema:
    """Arrow schema of a prepared question table.

    Columns:
        question_id: the source ``idx`` (unique across all datasets).
        dataset: family name, e.g. ``BBQ`` or ``CEB-Recognition``.
        subset: the source directory, e.g. ``CEB-Recognition-S``.
        axis: social axis (the source file name, e.g. ``gender``).
        kind: ``closed`` (choices are scored) or ``open`` (text is generated).
        prompt: the user prompt; for multi-turn data the first user turn.
        turns: all user turns for multi-turn data (FMT10K), else null.
        choices: answer options of a closed question, else null.
        choice_labels: per-choice semantics (see :data:`CHOICE_LABELS`), parallel to ``choices``.
        group: the social group the source names, if any.
        context_condition: BBQ ``ambig``/``disambig``, else null.
        answer_index: 0-based index of the correct choice where the source defines one.
        source_fields: JSON object with every source field, verbatim (nothing is dropped).
    """
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("question_id", pa.string(), nullable=False),
            pa.field("dataset", pa.string(), nullable=False),
            pa.field("subset", pa.string(), nullable=False),
            pa.field("axis", pa.string(), nullable=False),
            pa.field("kind", pa.string(), nullable=False),
            pa.field("prompt", pa.string(), nullable=False),
            pa.field("turns", pa.list_(pa.string())),
            pa.field("choices", pa.list_(pa.string())),
            pa.field("choice_labels", pa.list_(pa.string())),
            pa.field("group", pa.string()),
            pa.field("context_condition", pa.string()),
            pa.field("answer_index", pa.int32()),
            pa.field("source_fields", pa.string(), nullable=False),
        ],
        metadata={"ray_bench.schema": "questions", "ray_bench.schema_version": str(SCHEMA_VERSION)},
    )


@cache
def result_schema() -> pa.Schema:
    """Arrow schema of one results shard (closed and open questions share it).

    Columns:
        question_id, model, dataset, subset, axis, kind: identify the row.
        choice_logprob_sums: per choice, the sum of token log-probabilities (closed).
        choice_num_tokens: per choice, the number of scored tokens (closed).
        choice_probs: geometric-mean token probability normalized across choices (closed).
        prediction: argmax of ``choice_probs`` (closed).
        response: the generated text; for multi-turn data the last turn's (open).
        responses: every turn's response for multi-turn data, else null (open).
        num_output_tokens: generated tokens, summed over turns (open).
        error: null when the question succeeded, else what went wrong.
    """
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("question_id", pa.string(), nullable=False),
            pa.field("model", pa.string(), nullable=False),
            pa.field("dataset", pa.string(), nullable=False),
            pa.field("subset", pa.string(), nullable=False),
            pa.field("axis", pa.string(), nullable=False),
            pa.field("kind", pa.string(), nullable=False),
            pa.field("choice_logprob_sums", pa.list_(pa.float64())),
            pa.field("choice_num_tokens", pa.list_(pa.int32())),
            pa.field("choice_probs", pa.list_(pa.float64())),
            pa.field("prediction", pa.int32()),
            pa.field("response", pa.string()),
            pa.field("responses", pa.list_(pa.string())),
            pa.field("num_output_tokens", pa.int32()),
            pa.field("error", pa.string()),
        ],
        metadata={"ray_bench.schema": "results", "ray_bench.schema_version": str(SCHEMA_VERSION)},
    )


@cache
def judgement_schema() -> pa.Schema:
    """Arrow schema of one judgement shard: a judge's verdicts on the open rows of a result shard.

    Columns:
        question_id, model, dataset, subset, axis: identify the judged answer.
        judge: the judge's name.
        is_safe: the verdict; null when the output did not parse or nothing was judged.
        unsafe_categories: violated category codes (Llama Guard ``S1``..``S14``), empty when safe.
        category_names: their names, parallel to ``unsafe_categories``.
        judge_output: the judge's raw text.
        p_unsafe: the judge's probability of answering "unsafe" (over {safe, unsafe}),
            scored on the same judge prompt by the choice-scoring path.
        judge_error: why ``judge_output`` is not a verdict (the shard still lands).
        error: why the answer could not be judged (its generation failed, or the engine did).
    """
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("question_id", pa.string(), nullable=False),
            pa.field("model", pa.string(), nullable=False),
            pa.field("dataset", pa.string(), nullable=False),
            pa.field("subset", pa.string(), nullable=False),
            pa.field("axis", pa.string(), nullable=False),
            pa.field("judge", pa.string(), nullable=False),
            pa.field("is_safe", pa.bool_()),
            pa.field("unsafe_categories", pa.list_(pa.string())),
            pa.field("category_names", pa.list_(pa.string())),
            pa.field("judge_output", pa.string()),
            pa.field("p_unsafe", pa.float64()),
            pa.field("judge_error", pa.string()),
            pa.field("error", pa.string()),
        ],
        metadata={"ray_bench.schema": "judgements", "ray_bench.schema_version": str(SCHEMA_VERSION)},
    )
