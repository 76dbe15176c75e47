"""``ray-bench batch collect``: batch output and error files -> result shards, like a run's.

The request set's ``index.json`` (:mod:`ray_bench.results.batch_requests`) maps every
``custom_id`` to its question. Each dataset's questions are planned into shards exactly as
``ray-bench run`` plans them (same keys, same fingerprints), and a shard is written, in the
result schema, once every one of its questions has a line in the given files: a reply, or an
error (a failed request's ``error`` column). Shards already in ``--out`` are checked and kept
(same questions, same request set), so collecting again with more output files - or the same
ones - only adds what is new. The manifest records the collect like a run (data directory,
model, decoding), so ``ray-bench analyze --results OUT`` reads it as one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ray_bench.engines.openai_batch import BatchOutcome, merge_outcome, read_outcomes
from ray_bench.errors import ResultsError
from ray_bench.results.batch_requests import BATCH_ENGINE, read_index

if TYPE_CHECKING:
    import pyarrow as pa

    from ray_bench.stages.base import ShardJob


class BatchCollectConfig(BaseModel):
    """What ``ray-bench batch collect`` reads and where it writes.

    Attributes:
        requests: The request set's directory (with ``index.json``).
        outputs: Batch output files (OpenAI's ``output_file``, vLLM ``run_batch -o``).
        errors: Batch error files (OpenAI's ``error_file``).
        out_dir: The results directory (resumable: rerun with more files).
        data_dir: The prepared questions; default: the directory the index records.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests: Path
    outputs: list[Path] = Field(min_length=1)
    errors: list[Path] = Field(default_factory=list)
    out_dir: Path
    data_dir: Path | None = None


@dataclass
class CollectReport:
    """What :func:`collect_batch` did.

    Attributes:
        out_dir: The results directory.
        written: Shards written now.
        already_done: Shards that were already there.
        waiting: Shards still missing lines, and how many of their questions have none.
        replies: Requests with a reply in the files.
        errors: Requests with an error in the files.
        response_models: The models the server says answered.
    """

    out_dir: Path
    written: list[str] = field(default_factory=list)
    already_done: int = 0
    waiting: dict[str, int] = field(default_factory=dict)
    replies: int = 0
    errors: int = 0
    response_models: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when every shard of the request set is in ``out_dir``."""
        return not self.waiting


def read_all_outcomes(paths: Sequence[Path], known_ids: set[str]) -> dict[str, BatchOutcome]:
    """Every output and error line of ``paths`` by ``custom_id`` (see :func:`merge_outcome`)."""
    outcomes: dict[str, BatchOutcome] = {}
    for path in paths:
        for outcome in read_outcomes(path, known_ids):
            merge_outcome(outcomes, outcome)
    return outcomes


def collect_batch(config: BatchCollectConfig) -> CollectReport:
    """Write the result shards whose questions all have an output or error line (module docstring).

    Raises:
        ConfigError: no request index at ``config.requests``.
        BatchFileError: a malformed output or error line (file, line, field).
        ResultsError / ResumeMismatchError: the prepared questions changed, or ``out_dir`` holds
            shards of other questions or another request set.
    """
    from ray_bench.runner.lock import output_lock

    index = read_index(config.requests)
    entries = index["requests"]
    by_question = {(subset, qid): cid for cid, subset, qid in entries}
    outcomes = read_all_outcomes([*config.outputs, *config.errors], {cid for cid, _, _ in entries})
    out = Path(config.out_dir)
    report = CollectReport(out)
    report.replies = sum(o.error is None for o in outcomes.values())
    report.errors = len(outcomes) - report.replies
    report.response_models = sorted({o.model for o in outcomes.values() if o.model})
    data_dir = Path(config.data_dir or index["data_dir"])
    with output_lock(out, "batch collect"):
        manifest = _open_manifest(out, index)
        for subset in index["datasets"]:
            ids = [qid for _, s, qid in entries if s == subset]
            questions = _questions(data_dir, subset, ids)
            _collect_dataset(index, subset, questions, by_question, outcomes, manifest, report)
        _record_run(manifest, config, index, data_dir, report)
        manifest.save()
    return report


def _open_manifest(out: Path, index: dict[str, Any]) -> Any:
    from ray_bench.runner.manifest import Manifest, rebuild_shards

    if out.exists() and not out.is_dir():
        raise ResultsError(f"--out {str(out)!r} is an existing file, not a directory", hint="Pass a directory.")
    manifest = Manifest.load_or_create(out)
    rebuild_shards(manifest, out)
    manifest.check_models({index["model"]["name"]: index["model"]["path"]})
    return manifest


def _questions(data_dir: Path, subset: str, ids: list[str]) -> pa.Table:
    """The prepared rows of ``ids``, in that order.

    Raises:
        ResultsError: a requested question is no longer in the prepared data.
    """
    import pyarrow as pa

    from ray_bench.datasets import read_questions

    table = read_questions(data_dir, subset)
    row_of = {qid: i for i, qid in enumerate(table.column("question_id").to_pylist())}
    missing = [qid for qid in ids if qid not in row_of]
    if missing:
        raise ResultsError(
            f"{len(missing)} requested question(s) of {subset!r} are not in {str(data_dir)!r}, e.g. {missing[0]!r}",
            hint="Pass the prepared data the requests were written from with --data DIR.",
        )
    return table.take(pa.array([row_of[qid] for qid in ids], pa.int64()))


def made_by(index: dict[str, Any], subset: str) -> dict[str, Any]:
    """What makes a collected shard's answers (the ``made_by`` of ``ray-bench run``'s shards)."""
    from ray_bench.engines.prompts import PROMPT_VERSION
    from ray_bench.stages.plan import fingerprint_ids

    requests = fingerprint_ids([json.dumps(e) for e in index["requests"]])
    return {"model_path": index["model"]["path"], "revision": None, "checkpoint": None, "engine": BATCH_ENGINE,
            "dtype": "none", "device": "remote", "engine_options": index["request_options"],
            "system_prompt": index["system_prompt"], "prompt_version": PROMPT_VERSION,
            "decoding": (index["decoding"] or {}).get(subset), "request_set": requests}


def _collect_dataset(
    index: dict[str, Any],
    subset: str,
    questions: pa.Table,
    by_question: dict[tuple[str, str], str],
    outcomes: dict[str, BatchOutcome],
    manifest: Any,
    report: CollectReport,
) -> None:
    from ray_bench.results import shard_path, write_shard
    from ray_bench.stages.answer import MADE_BY, pending_jobs
    from ray_bench.stages.plan import plan_dataset

    name = index["model"]["name"]
    ids = questions.column("question_id").to_pylist()
    jobs = plan_dataset(name, subset, ids, int(index["shard_size"]))
    shard_made_by = json.loads(json.dumps(made_by(index, subset)))
    pending, done = pending_jobs(jobs, report.out_dir, lambda job: shard_made_by)
    report.already_done += done
    for job in pending:
        rows = questions.slice(job.start, job.size)
        lines = [outcomes.get(by_question[(subset, qid)]) for qid in ids[job.start:job.stop]]
        missing = sum(line is None for line in lines)
        if missing:
            report.waiting[job.key] = missing
            continue
        table = _result_rows(rows, name, lines)
        decoding = shard_made_by["decoding"]
        write_shard(shard_path(report.out_dir, job.key), table, job.fingerprint,
                    metadata={"decoding": json.dumps(decoding), MADE_BY: json.dumps(shard_made_by)})
        _record_shard(manifest, job, table, decoding)
        report.written.append(job.key)


def _result_rows(questions: pa.Table, model: str, lines: list[BatchOutcome | None]) -> pa.Table:
    import pyarrow as pa

    from ray_bench.schema import result_schema

    schema = result_schema()
    records = []
    for row, line in zip(questions.to_pylist(), lines):
        assert line is not None
        record = dict.fromkeys(schema.names)
        record.update({k: row[k] for k in ("question_id", "dataset", "subset", "axis", "kind")})
        ok = line.error is None
        record.update(model=model, response=line.response if ok else None, error=line.error,
                      num_output_tokens=line.num_output_tokens if ok else None)
        records.append(record)
    return pa.Table.from_pylist(records, schema=schema)


def _record_shard(manifest: Any, job: ShardJob, table: pa.Table, decoding: Any) -> None:
    from ray_bench import provenance

    errors = table.num_rows - table.column("error").null_count
    manifest.set_shard(job.key, {"stage": "answer", "fingerprint": job.fingerprint, "questions": job.size,
                                 "status": "done", "question_errors": errors, "decoding": decoding,
                                 "at": provenance.now_iso()})


def _record_run(manifest: Any, config: BatchCollectConfig, index: dict[str, Any], data_dir: Path,
                report: CollectReport) -> None:
    """The collect as a run entry (command ``batch``) and the model's entry, as a run records them."""
    from ray_bench import provenance

    model = index["model"]
    decodings = index["decoding"] or {}
    first = next(iter(decodings.values()), None) or {}
    engine = {"name": BATCH_ENGINE, "dtype": "none", "device": "remote", "system_prompt": index["system_prompt"],
              "temperature": first.get("temperature"), "top_p": first.get("top_p"),
              "max_new_tokens": first.get("max_new_tokens"), "seed": first.get("seed"),
              "options": index["request_options"]}
    run_config = {"models": [{"name": model["name"], "path": model["path"], "revision": None}],
                  "datasets": index["datasets"], "data_dir": str(data_dir), "out_dir": str(config.out_dir),
                  "engine": engine, "requests": str(config.requests), "outputs": [str(p) for p in config.outputs],
                  "errors": [str(p) for p in config.errors], "custom_id": index["custom_id"],
                  "decoding_by_dataset": decodings or None}
    manifest.start_run(run_config, provenance.collect(), command="batch")
    known = (manifest.data.get("models") or {}).get(model["name"], {})
    seen = sorted(set((known.get("engine") or {}).get("extra", {}).get("response_models", "").split(",")
                      + report.response_models) - {""})
    manifest.set_model(model["name"], {"path": model["path"], "revision": None, "engine": {
        "engine": BATCH_ENGINE, "model_path": model["path"], "dtype": "none", "device": "remote",
        "extra": {"response_models": ",".join(seen), "request_set": str(config.requests)}}})
