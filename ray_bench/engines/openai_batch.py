"""OpenAI Batch API files, pure: request lines, splitting into files, reading output and error files.

The same request files go to the OpenAI Batch API and to vLLM's
``python -m vllm.entrypoints.openai.run_batch`` (what the housing reference did for open models,
notes audits-and-exports.md 1.1 step 3). A request line is::

    {"custom_id": "...", "method": "POST", "url": "/v1/chat/completions", "body": {...}}

with the body of :func:`~ray_bench.engines.openai_options.request_body` (the online engine's).
An input file holds at most :data:`MAX_LINES` lines and :data:`MAX_BYTES` bytes (OpenAI's
limits: 50,000 requests, 200 MB); longer request sets are split over several files.

An output or error line is ``{"id", "custom_id", "response": {"status_code", "request_id",
"body"}, "error"}``: a success has a 2xx ``status_code`` and a chat completion as ``body``; a
failed request has another status (the body then holds ``{"error": {...}}``) or no response and
an ``error`` object (e.g. ``batch_expired``). vLLM's ``run_batch`` writes the same shape (its
error lines keep a response with status 400 and put the message in ``error``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray_bench.engines.openai_options import CHAT_PATH, error_text, parse_completion
from ray_bench.errors import BatchFileError, OutputParseError

#: OpenAI's limits of one batch input file.
MAX_LINES = 50_000
MAX_BYTES = 200 * 1024 * 1024
#: The ``url`` of every request line (the Batch API wants the ``/v1`` prefix).
BATCH_URL = "/v1" + CHAT_PATH
#: Request file names: ``requests-00000.jsonl``, ``requests-00001.jsonl``, ...
REQUEST_FILE = "requests-{:05d}.jsonl"


def request_line(custom_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """One line of a batch input file (as a dict)."""
    return {"custom_id": custom_id, "method": "POST", "url": BATCH_URL, "body": dict(body)}


def encode_line(line: Mapping[str, Any]) -> bytes:
    """The JSONL bytes of one line: compact JSON, UTF-8 (not ``\\u`` escapes), one ``\\n``."""
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def split_lines(lines: Iterable[bytes], max_lines: int = MAX_LINES, max_bytes: int = MAX_BYTES) -> Iterator[list[bytes]]:
    """Group encoded lines into files of at most ``max_lines`` lines and ``max_bytes`` bytes, in order.

    Raises:
        ValueError: a limit is not positive, or one line alone is longer than ``max_bytes``.
    """
    if max_lines < 1 or max_bytes < 1:
        raise ValueError(f"file limits must be positive, got {max_lines} lines and {max_bytes} bytes")
    chunk: list[bytes] = []
    size = 0
    for line in lines:
        if len(line) > max_bytes:
            raise ValueError(f"a request line of {len(line):,} bytes does not fit in a file of {max_bytes:,} bytes")
        if chunk and (len(chunk) == max_lines or size + len(line) > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(line)
        size += len(line)
    if chunk:
        yield chunk


@dataclass(frozen=True)
class RequestFile:
    """One written batch input file."""

    name: str
    lines: int
    bytes: int
    sha256: str


def write_request_files(
    lines: Iterable[Mapping[str, Any]], out_dir: str | Path, *, max_lines: int = MAX_LINES, max_bytes: int = MAX_BYTES
) -> list[RequestFile]:
    """Write request lines as ``requests-NNNNN.jsonl`` files in ``out_dir`` (each atomically)."""
    from ray_bench.atomic import write_bytes_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for number, chunk in enumerate(split_lines((encode_line(line) for line in lines), max_lines, max_bytes)):
        data = b"".join(chunk)
        name = REQUEST_FILE.format(number)
        write_bytes_atomic(out / name, data)
        files.append(RequestFile(name, len(chunk), len(data), hashlib.sha256(data).hexdigest()))
    return files


@dataclass(frozen=True)
class BatchOutcome:
    """What a batch output or error file says about one request.

    Attributes:
        custom_id: The request's id.
        response: The reply text on success, else ``None``.
        num_output_tokens: ``usage.completion_tokens`` on success.
        error: ``None`` on success, else why the request failed.
        model: The model the server says answered (e.g. a dated snapshot name).
        system_fingerprint: The server's configuration fingerprint, if it sent one.
        where: ``file:line`` of the line (for messages about duplicates).
    """

    custom_id: str
    response: str | None = None
    num_output_tokens: int | None = None
    error: str | None = None
    model: str | None = None
    system_fingerprint: str | None = None
    where: str = ""


def read_outcomes(path: str | Path, known_ids: Collection[str]) -> Iterator[BatchOutcome]:
    """Every line of a batch output or error file, checked.

    Raises:
        BatchFileError: naming the file, line and field of the first line that is not JSON, has
            no ``custom_id``, names a request that is not in ``known_ids``, or has neither a
            response nor an error.
    """
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise BatchFileError(f"cannot read it ({exc.strerror or exc})", file=str(path)) from None
    with handle:
        for number, text in enumerate(handle, start=1):
            if text.strip():
                yield _outcome(text, str(path), number, known_ids)


def _outcome(text: str, file: str, line: int, known_ids: Collection[str]) -> BatchOutcome:
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise BatchFileError(f"not a JSON line ({exc}): {text[:80]!r}", file=file, line=line) from None
    if not isinstance(record, Mapping):
        raise BatchFileError(f"a JSON {type(record).__name__}, not an object", file=file, line=line)
    custom_id = record.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise BatchFileError("missing or not a string", file=file, line=line, field="custom_id")
    if custom_id not in known_ids:
        raise BatchFileError(
            f"{custom_id!r} is not one of this request set's custom_ids", file=file, line=line, field="custom_id",
            hint="Pass the output files of the batch made from this --requests directory.",
        )
    where = f"{file}:{line}"
    response, error = record.get("response"), record.get("error")
    if response is None:
        if error is None:
            raise BatchFileError("has neither a response nor an error", file=file, line=line, field="response")
        return BatchOutcome(custom_id, error=f"batch error: {_error_message(error)}", where=where)
    if not isinstance(response, Mapping):
        raise BatchFileError(f"a JSON {type(response).__name__}, not an object", file=file, line=line, field="response")
    status = response.get("status_code")
    if not isinstance(status, int) or isinstance(status, bool):
        raise BatchFileError(f"{status!r} is not an HTTP status", file=file, line=line, field="response.status_code")
    body = response.get("body")
    if not 200 <= status < 300:
        return BatchOutcome(custom_id, error=f"HTTP {status}: {_error_message(error if error else body)}", where=where)
    try:
        reply, tokens = parse_completion(body)
    except OutputParseError as exc:
        raise BatchFileError(str(exc), file=file, line=line, field="response.body") from None
    fingerprint = body.get("system_fingerprint")
    return BatchOutcome(custom_id, reply, tokens, model=body.get("model") if isinstance(body.get("model"), str) else None,
                        system_fingerprint=fingerprint if isinstance(fingerprint, str) else None, where=where)


def _error_message(error: Any) -> str:
    """``code: message`` of an OpenAI error object, or the message of an error body."""
    if isinstance(error, Mapping):
        inner = error.get("error") if isinstance(error.get("error"), Mapping) else error
        code = inner.get("code")
        message = error_text(inner)
        return f"{code}: {message}" if isinstance(code, str) and code else message
    return error_text(error)


def merge_outcome(known: dict[str, BatchOutcome], new: BatchOutcome) -> None:
    """Add ``new`` to ``known`` (by ``custom_id``): a success replaces an error (a retried request),
    an error never replaces a success, and the same line read twice (a file passed twice) is kept once.

    Raises:
        BatchFileError: two different successful replies for one ``custom_id``.
    """
    old = known.get(new.custom_id)
    if old is None or (old.error is not None and new.error is None):
        known[new.custom_id] = new
        return
    if old.error is None and new.error is None and (old.response, old.model) != (new.response, new.model):
        file, _, line = new.where.rpartition(":")
        raise BatchFileError(
            f"a second, different reply for {new.custom_id!r} (the first is at {old.where})",
            file=file, line=int(line) if line.isdigit() else None, field="custom_id",
            hint="Pass each batch's output once; collect replies of different runs into different --out directories.",
        )
