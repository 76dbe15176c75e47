"""Scoped workarounds for llmcompressor 0.14.0.1 on machines without an accelerator.

``AWQModifier`` pins its cached activations (``IntermediatesCache.pin_memory``)
without checking that an accelerator exists, and pinning fails on a CPU-only machine
with ``RuntimeError: Cannot access accelerator device when none is available``
(quantization.md 2.3). Pinning only speeds up host-to-device copies, so skipping it
on CPU changes no numbers. The patch is applied only when no accelerator is present
and is reverted on exit, so other code in the process sees the original class.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

log = logging.getLogger(__name__)


def accelerator_available() -> bool:
    """True when torch sees a CUDA/XPU/... accelerator."""
    import torch

    accel = getattr(torch, "accelerator", None)
    if accel is not None and hasattr(accel, "is_available"):
        return bool(accel.is_available())
    return bool(torch.cuda.is_available())


@contextlib.contextmanager
def cpu_pin_memory_workaround(needed: bool = True) -> Iterator[bool]:
    """Make ``IntermediatesCache.pin_memory`` a no-op while inside, on CPU-only machines.

    Args:
        needed: False skips the patch (methods that never pin, e.g. RTN).

    Yields:
        Whether the patch is active.
    """
    if not needed or accelerator_available():
        yield False
        return
    from llmcompressor.pipelines.cache import IntermediatesCache

    original = IntermediatesCache.__dict__.get("pin_memory")
    if original is None:
        # A future llmcompressor without the method needs no patch.
        yield False
        return

    def _no_pin(self, *args, **kwargs) -> None:
        return None

    IntermediatesCache.pin_memory = _no_pin
    log.info("no accelerator: IntermediatesCache.pin_memory disabled for this quantization run")
    try:
        yield True
    finally:
        IntermediatesCache.pin_memory = original
