"""``ray-bench batch requests``: prepared open questions -> OpenAI Batch API request files.

A request set is a directory: ``requests-NNNNN.jsonl`` (at most 50,000 lines and 200 MB each)
and ``index.json``, which says which question every ``custom_id`` is and how the requests were
made (model, decoding, system prompt, request options). ``ray-bench batch collect``
(:mod:`ray_bench.results.batch`) reads the index to turn the batch's output files into result
shards. Writing the same set again is idempotent; writing another set into the same directory is
refused (its outputs would be read with the wrong settings).

``custom_id`` comes from a template over the question: ``{question_id}`` (the default),
``{subset}``, ``{axis}``, ``{index}`` (the row in its dataset) and every ``source_fields`` key:
``task-{run_id}`` gives the housing reference's own ids.
"""

from __future__ import annotations

import json
import string
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from ray_bench.config import EngineConfig, ModelSpec
from ray_bench.engines.openai_batch import MAX_BYTES, MAX_LINES, RequestFile, request_line, write_request_files
from ray_bench.engines.openai_options import (
    SCORING_HINT,
    SCORING_UNSUPPORTED,
    check_decoding,
    parse_openai_options,
    request_body,
)
from ray_bench.engines.prompts import turn_messages
from ray_bench.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

#: The request set's description, next to its files.
INDEX_NAME = "index.json"
INDEX_FORMAT = "ray-bench openai batch requests"
INDEX_VERSION = 1
#: The engine name recorded in the result shards of a collected batch.
BATCH_ENGINE = "openai-batch"


def _model(value: Any) -> Any:
    return ModelSpec.parse(value) if isinstance(value, str) else value


class BatchRequestsConfig(BaseModel):
    """What ``ray-bench batch requests`` writes.

    Attributes:
        data_dir: Prepared questions (``ray-bench datasets prepare`` / ``datasets housing``).
        datasets: Open dataset (directory) or family names.
        model: ``NAME=SERVED_NAME``: the results' model name and the served model's name (the
            request bodies' ``model``).
        out_dir: The request set's directory.
        engine: Decoding (``temperature``, ``top_p``, ``max_new_tokens``, ``seed``,
            ``reference_decoding``), ``system_prompt`` and the request options of the ``openai``
            engine (``max_tokens_field``, ``send_seed``, ``extra_body``), as for online runs.
        provider_defaults: Send no decoding at all (the provider's defaults apply), as the
            housing reference's files did; results then record no decoding.
        limit: The first N questions of each dataset.
        custom_id: The ``custom_id`` template (module docstring).
        shard_size: Questions per result shard when collected.
        max_lines: Lines per request file (OpenAI's limit: 50,000).
        max_bytes: Bytes per request file (OpenAI's limit: 200 MB).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path
    datasets: list[str] = Field(min_length=1)
    model: Annotated[ModelSpec, BeforeValidator(_model)]
    out_dir: Path
    engine: EngineConfig = Field(default_factory=lambda: EngineConfig(name="openai"))
    provider_defaults: bool = False
    limit: int | None = Field(default=None, gt=0)
    custom_id: str = "{question_id}"
    shard_size: int = Field(default=1000, gt=0)
    max_lines: int = Field(default=MAX_LINES, gt=0, le=MAX_LINES)
    max_bytes: int = Field(default=MAX_BYTES, gt=0, le=MAX_BYTES)

    @model_validator(mode="after")
    def _one_decoding(self) -> BatchRequestsConfig:
        if self.engine.name != "openai":
            raise ValueError(f"engine.name must be 'openai' (the request bodies' engine), got {self.engine.name!r}")
        given = sorted(self.engine.model_fields_set & {"temperature", "top_p", "max_new_tokens", "seed",
                                                       "reference_decoding"})
        if self.provider_defaults and given:
            raise ValueError(f"provider_defaults sends no decoding; do not also set {', '.join(given)}")
        return self


@dataclass(frozen=True)
class RequestsReport:
    """What :func:`write_batch_requests` wrote."""

    out_dir: Path
    files: tuple[RequestFile, ...]
    requests: int
    datasets: tuple[str, ...]
    unchanged: bool


def write_batch_requests(config: BatchRequestsConfig) -> RequestsReport:
    """Write the request files and ``index.json`` of ``config`` (module docstring).

    Raises:
        ConfigError: a dataset with closed or multi-turn questions, a bad ``custom_id`` template or
            one that gives two questions the same id, or ``out_dir`` holding another request set.
    """
    from ray_bench.atomic import write_json_atomic
    from ray_bench.datasets import resolve_names

    options = parse_openai_options(config.engine.options)
    out = Path(config.out_dir)
    lines, entries, subsets = [], [], []
    for subset in resolve_names(config.datasets):
        table = _open_questions(config, subset)
        decoding = None if config.provider_defaults else config.engine.decoding(subset)
        if decoding is not None:
            check_decoding(decoding)
        subsets.append(subset)
        rows = table.to_pylist()
        for row, custom_id in zip(rows, _custom_ids(config.custom_id, rows, subset)):
            lines.append(request_line(custom_id, _body(config, options, row, decoding)))
            entries.append([custom_id, subset, row["question_id"]])
    _check_unique(entries, config.custom_id)
    index = _index(config, options, subsets, entries)
    unchanged = _check_target(out, index)
    files = write_request_files(lines, out, max_lines=config.max_lines, max_bytes=config.max_bytes)
    write_json_atomic(out / INDEX_NAME, {**index, "files": [asdict(f) for f in files]})
    return RequestsReport(out, tuple(files), len(lines), tuple(subsets), unchanged)


def _open_questions(config: BatchRequestsConfig, subset: str) -> pa.Table:
    """The dataset's questions (``limit`` applied); closed or multi-turn ones are refused."""
    from ray_bench.datasets import read_questions
    from ray_bench.schema import KIND_CLOSED

    table = read_questions(config.data_dir, subset)
    if config.limit is not None:
        table = table.slice(0, config.limit)
    if KIND_CLOSED in set(table.column("kind").to_pylist()):
        raise ConfigError(f"dataset {subset!r} holds closed questions, which batch requests cannot answer: "
                          f"{SCORING_UNSUPPORTED}", hint=SCORING_HINT)
    turns = max((len(t or ()) for t in table.column("turns").to_pylist()), default=0)
    if turns > 1:
        raise ConfigError(
            f"dataset {subset!r} has multi-turn questions (up to {turns} user turns): one batch request is one "
            "call, and each later turn needs the model's reply to the one before",
            hint=f"Answer it online: ray-bench run --engine openai --dataset {subset} ...",
        )
    return table


def _body(config: BatchRequestsConfig, options: Any, row: dict[str, Any], decoding: Any) -> dict[str, Any]:
    """The request body: the online engine's first turn of this question (same messages, same seed)."""
    turns = tuple(row["turns"]) if row["turns"] else (row["prompt"],)
    messages = turn_messages(turns, [], 0, config.engine.system_prompt)
    seed = decoding.request_seed(row["question_id"], 0) if decoding is not None else None
    return request_body(config.model.path, messages, decoding, seed, options)


def _custom_ids(template: str, rows: list[dict[str, Any]], subset: str) -> list[str]:
    """``custom_id`` of every row (a question table's ``to_pylist()``), from ``template``.

    Raises:
        ConfigError: a placeholder that is neither a question column nor a ``source_fields`` key.
    """
    fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    if not fields:
        raise ConfigError(f"--custom-id {template!r} has no placeholder: every request would get the same id",
                          hint="Use e.g. --custom-id '{question_id}' or 'task-{run_id}'.")
    out = []
    for index, row in enumerate(rows):
        values = {**json.loads(row["source_fields"] or "{}"), "question_id": row["question_id"], "subset": subset,
                  "axis": row["axis"], "index": index}
        try:
            out.append(template.format_map(values))
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"--custom-id {template!r} cannot be filled for question {row['question_id']!r} of {subset!r}: {exc}",
                hint=f"Placeholders: question_id, subset, axis, index, or a source field ({', '.join(sorted(values))}).",
            ) from None
    return out


def _check_unique(entries: list[list[str]], template: str) -> None:
    seen: dict[str, list[str]] = {}
    for custom_id, subset, question_id in entries:
        if custom_id in seen:
            first = seen[custom_id]
            raise ConfigError(
                f"--custom-id {template!r} gives {first[1]}/{first[0]!r} and {subset}/{question_id!r} the same id "
                f"{custom_id!r}; a batch needs one id per request",
                hint="Add {question_id} or {subset} to the template.",
            )
        seen[custom_id] = [question_id, subset]


def _index(config: BatchRequestsConfig, options: Any, subsets: list[str], entries: list[list[str]]) -> dict[str, Any]:
    decodings = {} if config.provider_defaults else {s: asdict(config.engine.decoding(s)) for s in subsets}
    return {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "model": {"name": config.model.name, "path": config.model.path},
        "data_dir": str(Path(config.data_dir).expanduser().resolve()),
        "datasets": subsets,
        "decoding": decodings or None,
        "system_prompt": config.engine.system_prompt,
        "request_options": {"max_tokens_field": options.max_tokens_field, "send_seed": options.send_seed,
                            "extra_body": options.extra_body},
        "custom_id": config.custom_id,
        "shard_size": config.shard_size,
        "limit": config.limit,
        "requests": entries,
    }


def _check_target(out: Path, index: dict[str, Any]) -> bool:
    """Whether ``out`` already holds exactly this request set; refuse another one.

    Raises:
        ConfigError: ``out`` is a file, or its index describes other requests or settings.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is an existing file, not a directory", hint="Pass a directory.")
    path = out / INDEX_NAME
    if not path.is_file():
        return False
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = {}
    old = {k: v for k, v in (old if isinstance(old, dict) else {}).items() if k != "files"}
    new = json.loads(json.dumps(index))  # as the index file reads back (tuples as lists, ...)
    if old != new:
        differs = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise ConfigError(
            f"{str(out)!r} already holds a request set made differently (differs in: {', '.join(differs)})",
            hint="Write the new requests into a new --out directory: outputs of the old files would be read "
            "with the new settings.",
        )
    return True


def read_index(requests_dir: str | Path) -> dict[str, Any]:
    """The ``index.json`` of a request set.

    Raises:
        ConfigError: no index, or not one written by ``ray-bench batch requests``.
    """
    path = Path(requests_dir) / INDEX_NAME
    try:
        index = json.loads(path.read_text())
    except OSError:
        raise ConfigError(f"{str(path)!r} does not exist", hint="Pass the --out directory of "
                          "`ray-bench batch requests` with --requests.") from None
    except ValueError as exc:
        raise ConfigError(f"{str(path)!r} is not JSON: {exc}", hint="Write the request set again.") from None
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise ConfigError(f"{str(path)!r} is not a ray-bench batch request index", hint="Pass the --out directory "
                          "of `ray-bench batch requests` with --requests.")
    if index.get("version") != INDEX_VERSION:
        raise ConfigError(f"{str(path)!r} has index version {index.get('version')!r}; this ray-bench reads "
                          f"{INDEX_VERSION}", hint="Write the request set again with this version.")
    return index
