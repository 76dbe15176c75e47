"""Helpers shared by the CLI commands: the consoles, error printing, config building, stdout formats."""

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


def log_dim(message: str) -> None:
    """A benchmark's or stage's progress line, dimmed, on stderr."""
    err_console.print(f"[dim]{message}[/dim]", highlight=False)


def config_from(model_cls: type, config: os.PathLike[str] | str | None, overrides: dict, what: str) -> object:
    """The validated ``model_cls``: the YAML of ``--config`` first, then the flags on top.

    ``what`` names it in errors (``"analyze"`` -> "analyze config FILE: ...").
    """
    from ray_bench.config import build_config, load_yaml, merge_overrides

    return build_config(model_cls, merge_overrides(load_yaml(config), overrides),
                        f"{what} config{f' {config}' if config else ''}")


def engine_options(pairs: list[str] | None) -> dict | None:
    """Parse ``--engine-option KEY=VALUE`` pairs; values are YAML scalars (numbers, booleans, strings)."""
    if not pairs:
        return None
    import yaml

    from ray_bench.errors import ConfigError

    out: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--engine-option {pair!r} is not KEY=VALUE")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            problem = str(exc).splitlines()[0]
            raise ConfigError(
                f"--engine-option {pair!r}: the value is not valid YAML ({problem})",
                hint="Values are read as YAML: quote a string that holds YAML syntax, e.g. KEY='\"a: b\"'.",
            ) from None
    return out


#: The ``--format`` values of the commands that print a table on stdout.
FORMATS = ("table", "csv", "json")


def check_format(fmt: str) -> None:
    """Refuse a ``--format`` other than table, csv or json (before any work is done)."""
    from ray_bench.errors import ConfigError

    if fmt not in FORMATS:
        raise ConfigError(f"--format must be table, csv or json, got {fmt!r}")


def print_frame(frame, fmt: str, render=None) -> None:
    """A Polars frame on stdout as CSV, JSON or a rich table (``render(frame)``, default: plain columns)."""
    import json

    import typer

    if fmt == "csv":
        typer.echo(frame.write_csv(), nl=False)
    elif fmt == "json":
        typer.echo(json.dumps(frame.to_dicts(), indent=2, default=str))
    else:
        out_console.print((render or _plain_table)(frame))


def _plain_table(frame):
    from rich.table import Table

    table = Table(*frame.columns, box=None, pad_edge=False)
    for row in frame.iter_rows():
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    return table
