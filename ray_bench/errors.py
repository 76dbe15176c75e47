"""Every exception ray-bench raises on purpose.

Each error carries a one-line message (what failed and the offending value) and a
``hint`` (the next step). The CLI prints them as ``Error: ...`` and ``Hint: ...``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RayBenchError(Exception):
    """Base class of all ray-bench errors.

    Args:
        message: What failed, including the offending value.
        hint: What the user should do next.
    """

    default_hint = "Run with RAY_BENCH_DEBUG=1 to see the traceback."

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint or self.default_hint

    def __str__(self) -> str:
        return self.message


class ConfigError(RayBenchError):
    """A config file or command-line option is invalid."""

    default_hint = "Check the option against `ray-bench COMMAND --help`."


class UnknownNameError(ConfigError):
    """A registry lookup (dataset, engine, quantization method) found no such name."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        suggestion = f" Did you mean {close[0]!r}?" if close else ""
        super().__init__(
            f"unknown {kind} {name!r}.{suggestion}",
            hint=f"Known {kind}s: {', '.join(known)}.",
        )
        self.name = name
        self.known = known


class DatasetError(RayBenchError):
    """A dataset source file is malformed: names the file, row and field."""

    default_hint = "Fix or re-download the source file, then run `ray-bench datasets prepare` again."

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = []
        if file is not None:
            where.append(f"file {file}")
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field {field!r}")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message, hint=hint)
        self.file, self.row, self.field = file, row, field


class DownloadError(RayBenchError):
    """A remote source could not be fetched (offline, 404, ...)."""

    default_hint = (
        "Download the files on a machine with internet access and pass the local "
        "directory with --source DIR."
    )


class EngineError(RayBenchError):
    """An inference engine could not be created or failed as a whole."""

    default_hint = "Check the model path and the engine options (`ray-bench run --help`)."


class ModelLoadError(EngineError):
    """A model or tokenizer could not be loaded from its path."""


class EngineStartError(EngineError):
    """A model actor could not create its engine; that model's shards all fail with it.

    Args:
        model: The model's name.
        cause: The creation error's message (for vLLM: the engine core's own error).
        hint: The creation error's hint.
    """

    def __init__(self, model: str, cause: str, hint: str | None = None) -> None:
        super().__init__(f"model {model!r} could not be loaded: {cause}", hint)
        self.model, self.reason = model, cause

    def __reduce__(self) -> tuple:
        # Crosses Ray's process boundary: rebuild from the constructor's own arguments.
        return (type(self), (self.model, self.reason, self.hint))


class RequestValidationError(EngineError, ValueError):
    """One question or conversation cannot be sent to an engine as it is (too long, empty)."""


class OutputParseError(EngineError, ValueError):
    """An engine's raw output does not have the shape its request implies."""


class JudgeParseError(EngineError, ValueError):
    """A judge's output text is not its verdict format (kept as the row's ``judge_error``)."""


class BatchFileError(RayBenchError):
    """A batch request, output or error file (OpenAI Batch API format) is malformed: names the file,
    line and field."""

    default_hint = ("Pass the output and error files the batch job wrote for this request set "
                    "(`ray-bench batch collect --requests DIR`), unedited.")

    def __init__(self, message: str, *, file: str, line: int | None = None, field: str | None = None,
                 hint: str | None = None) -> None:
        where = [f"file {file}"] + ([f"line {line}"] if line is not None else []) + (
            [f"field {field!r}"] if field is not None else [])
        super().__init__(", ".join(where) + ": " + message, hint=hint)
        self.file, self.line, self.field = file, line, field


class ResultsError(RayBenchError):
    """A results directory is missing, inconsistent or from an incompatible run."""

    default_hint = "Point --results at the --out directory of a `ray-bench run`."


class ResumeMismatchError(ResultsError):
    """An output directory holds a run whose shard plan differs from this one."""

    default_hint = (
        "Rerun with the same --shard-size/--limit as the first run, or choose a new --out directory."
    )


class CorruptShardError(ResultsError):
    """A shard file exists but is not whole (truncated, scrambled, or not ray-bench's)."""

    default_hint = "Rerun the same command with --recompute-bad: it moves the file aside and recomputes it."


class AnalysisError(RayBenchError):
    """The analysis inputs do not allow the requested computation."""


class ExportError(RayBenchError):
    """A review or preference export cannot be made from its inputs (``ray-bench export``)."""

    default_hint = "See docs/export.md for the layouts `ray-bench export` reads and writes."


class QuantizationError(RayBenchError):
    """A quantization request is invalid or a variant failed."""

    default_hint = "See `ray-bench quantize --help` for the supported methods and schemes."


class DependencyError(RayBenchError):
    """An optional dependency (extra) is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"this feature needs the optional package {package!r}, which is not installed",
            hint=f"Install the extra: pip install 'ray-bench[{extra}]'.",
        )
