"""`ray-bench datasets ...` (placeholder: being written)."""

import typer

app = typer.Typer(no_args_is_help=True, help="List and prepare the bias datasets.")
