"""The ``ray-bench`` command line (typer). Commands mirror the pipeline stages."""
