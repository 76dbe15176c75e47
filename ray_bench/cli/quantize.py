"""`ray-bench quantize` (placeholder: being written)."""

EPILOG = ""


def quantize() -> None:
    """Make quantized variants of a model (not implemented yet)."""
    raise NotImplementedError
