"""The judge stage: open-ended results -> safety judgements (Llama Guard by default).

A job is one result shard with open rows; its judgement shard goes beside it,
``<out>/<model>/<dataset>/judge-<judge>/shard-NNNNN.parquet`` (:func:`ray_bench.results.judgement_key`).
The judge sees its own chat template over the conversation: single-turn, the user prompt and
the answer; multi-turn (FMT10K), every turn by default or only the last with ``judge_turns: last``
(what the reference judged, notes reference-benchmark.md 3.2). Its fingerprint covers the
answers it judges and the judge's settings, so a recomputed answer is judged again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray_bench.errors import ResumeMismatchError
from ray_bench.results import judgement_key, read_fingerprint, shard_path, verify_shard, write_shard
from ray_bench.stages.answer import move_aside, stage_resources
from ray_bench.stages.base import ShardJob
from ray_bench.stages.judge_rows import JudgeTask

if TYPE_CHECKING:
    import pyarrow as pa

    from ray_bench.config import JudgeOptions, ModelSpec

#: Result columns the judge reads.
_ANSWER_COLUMNS = ["question_id", "model", "dataset", "subset", "axis", "kind", "response", "responses", "error"]


def conversation(turns: list[str], responses: list[str], mode: str) -> tuple[tuple[str, str], ...]:
    """The judged conversation: every (user, assistant) pair, or with ``mode="last"`` the last one."""
    pairs = list(zip(turns, responses))
    if mode == "last":
        pairs = pairs[-1:]
    return tuple(m for user, answer in pairs for m in (("user", user), ("assistant", answer)))


def _answer_rows(path: Path) -> list[dict[str, Any]]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=_ANSWER_COLUMNS)
    return table.filter(pc.equal(table.column("kind"), "open")).to_pylist()


class JudgeStage:
    """Judge the open rows of result shards of ``out_dir`` with ``options.model``."""

    name = "judge"
    manifest_section = "judges"

    def __init__(
        self, options: JudgeOptions, out_dir: Path, questions: dict[str, pa.Table], sources: list[ShardJob]
    ) -> None:
        """``sources``: result shards already there to judge (more may come from an answer stage)."""
        self.options = options
        self.engine = options.engine
        self.resources, _ = stage_resources(options.engine, options.resources)  # an API judge: CPU actors
        self.out_dir = Path(out_dir)
        self.judge = options.model.name
        self._questions = questions
        self._prompts: dict[str, dict[str, tuple[list[str], str]]] = {}
        self._sources = sources
        self._rows: dict[str, list[dict[str, Any]]] = {}

    def actor_models(self) -> dict[str, ModelSpec]:
        """One actor group: the judge."""
        return {self.judge: self.options.model}

    def settings(self) -> dict[str, Any]:
        """What the fingerprint of every judgement covers (and the manifest records)."""
        engine = self.engine.model_dump(mode="json", include={"name", "dtype", "max_new_tokens", "temperature",
                                                               "top_p", "seed", "options"})
        return {"path": self.options.model.path, "revision": self.options.model.revision, "judge_turns": self.options.judge_turns,
                "score": self.options.score, "engine": engine}

    def initial_jobs(self) -> tuple[list[ShardJob], int]:
        """The judgements still missing for the result shards given at construction."""
        pending, done = [], 0
        for source in self._sources:
            job = self._job(source)
            if job is None:
                continue
            path = shard_path(self.out_dir, job.key)
            if not path.exists():
                pending.append(job)
                continue
            if verify_shard(path) is not None:
                # Verdicts are derived data: a damaged file is kept aside and judged again.
                move_aside(path, self.out_dir, job.key)
                pending.append(job)
                continue
            found = read_fingerprint(path)
            if found != job.fingerprint:
                # The answers or the judge's settings changed since: judge again (atomic replace).
                pending.append(job)
                continue
            done += 1
        return pending, done

    def jobs_after(self, landed: ShardJob) -> list[ShardJob]:
        """A result shard just landed: judge it if it has open rows."""
        if landed.source is not None:  # a judgement, not a result shard
            return []
        job = self._job(landed)
        return [job] if job is not None else []

    def _job(self, source: ShardJob) -> ShardJob | None:
        rows = _answer_rows(shard_path(self.out_dir, source.key))
        if not rows:
            return None
        self._rows[source.key] = rows
        digest = hashlib.sha256(json.dumps([self.settings(), source.fingerprint], sort_keys=True).encode())
        for row in rows:
            digest.update(json.dumps([row["question_id"], row["response"], row["responses"], row["error"]]).encode())
        return ShardJob(
            key=judgement_key(source.key, self.judge), group=self.judge, fingerprint=digest.hexdigest()[:16],
            size=len(rows), model=source.model, dataset=source.dataset, index=source.index, source=source.key,
        )

    def payload(self, job: ShardJob) -> tuple[JudgeTask, pa.Table]:
        """The conversations to judge (answers whose generation failed carry that error)."""
        import pyarrow as pa

        rows = self._rows.pop(job.source) if job.source in self._rows else _answer_rows(shard_path(self.out_dir, job.source))
        prompts = self._prompts_of(job.dataset)
        out = []
        for row in rows:
            turns, prompt = prompts.get(row["question_id"], (None, None))
            error = row["error"]
            if error is None and prompt is None:
                error = f"question {row['question_id']!r} is not in the prepared questions of {job.dataset!r}"
            messages: tuple[tuple[str, str], ...] = ()
            if error is None:
                responses = row["responses"] or [row["response"] or ""]
                messages = conversation(turns or [prompt], responses, self.options.judge_turns)
            out.append({**{k: row[k] for k in ("question_id", "model", "dataset", "subset", "axis")},
                        "roles": [m[0] for m in messages], "contents": [m[1] for m in messages], "error": error})
        task = JudgeTask(self.judge, self.engine.decoding(), self.options.score)
        return task, pa.Table.from_pylist(out, schema=JudgeTask.payload_schema())

    def _prompts_of(self, dataset: str) -> dict[str, tuple[list[str], str]]:
        if dataset not in self._prompts:
            table = self._questions.get(dataset)
            if table is None:
                self._prompts[dataset] = {}
            else:
                cols = table.select(["question_id", "turns", "prompt"]).to_pydict()
                self._prompts[dataset] = {q: (t, p) for q, t, p in zip(cols["question_id"], cols["turns"], cols["prompt"])}
        return self._prompts[dataset]

    def land(self, job: ShardJob, table: pa.Table) -> dict[str, Any]:
        """Write the judgement shard; the manifest gets verdict counts."""
        from ray_bench.schema import judgement_schema

        path = shard_path(self.out_dir, job.key)
        write_shard(path, table, job.fingerprint, schema=judgement_schema(),
                    metadata={"judge": self.judge, "source": job.source or "",
                              "judge_settings": json.dumps(self.settings(), sort_keys=True)})
        safe = table.column("is_safe").to_pylist()
        return {
            "judge": self.judge,
            "unsafe": sum(1 for v in safe if v is False),
            "judge_errors": table.num_rows - table.column("judge_error").null_count,
            "question_errors": table.num_rows - table.column("error").null_count,
        }


def check_judge_settings(out_dir: Path, judge: str, settings: dict[str, Any], recorded: dict[str, Any]) -> None:
    """Refuse a judge name whose judgements in ``out_dir`` were made with other settings.

    Judgements of one name must come from one judge configuration; a changed checkpoint,
    engine or turn mode gets a new name instead of silently mixing with the old verdicts.

    Raises:
        ResumeMismatchError: naming the first setting that differs.
    """
    old = (recorded.get(judge) or {}).get("settings")
    if not old or old == settings:
        return
    field = next((k for k in settings if old.get(k) != settings[k]), "settings")
    raise ResumeMismatchError(
        f"judge {judge!r} already judged {str(out_dir)!r} with {field}={old.get(field)!r}, not {settings.get(field)!r}",
        hint="Give this judge configuration another name (--judge NAME=PATH) to keep both sets of verdicts.",
    )
