"""Helpers shared by the CLI commands: stderr console, error printing."""

from __future__ import annotations

import os
import sys

from rich.console import Console

#: Progress, logs and tables meant for people go to stderr; stdout is data.
err_console = Console(stderr=True)
#: Data (tables, JSON) goes to stdout.
out_console = Console()
if not out_console.is_terminal:
    # Piped or captured stdout: do not squeeze tables into 80 columns.
    out_console = Console(width=160)


def debug_enabled() -> bool:
    """True when RAY_BENCH_DEBUG is set to a non-empty value other than 0."""
    return os.environ.get("RAY_BENCH_DEBUG", "") not in ("", "0")


def print_error(exc: BaseException, hint: str | None) -> None:
    """Print the one-line ``Error:`` and ``Hint:`` pair to stderr."""
    message = str(exc).replace("\n", " ")
    sys.stderr.write(f"Error: {message}\n")
    if hint:
        sys.stderr.write(f"Hint: {hint}\n")


def write_json_report(path: os.PathLike[str] | str, data: object) -> None:
    """A benchmark's ``--json`` file (parent folders made), announced on stderr."""
    import json
    from pathlib import Path

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, indent=2) + "\n")
    err_console.print(f"wrote {target}")


def parse_int_list(text: str, flag: str, example: str) -> tuple[int, ...]:
    """``"1,8,32"`` as ``(1, 8, 32)``: a comma-separated list of positive integers.

    Raises:
        ConfigError: not integers, or none, or one below 1 (the hint shows ``example``).
    """
    from ray_bench.errors import ConfigError

    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{flag} {text!r} is not a comma-separated list of integers",
                          hint=f"E.g. {flag} {example}.") from None
    if not values or min(values) < 1:
        raise ConfigError(f"{flag} {text!r} needs positive integers", hint=f"E.g. {flag} {example}.")
    return values
