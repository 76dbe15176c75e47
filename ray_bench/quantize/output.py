"""Output naming and atomic checkpoint directories.

A variant of base ``B`` made with method ``M`` and scheme ``S`` is written to
``<out_dir>/<B>-<M>-<S>`` (e.g. ``qwen2.5-7b-instruct-smoothquant-rtn-w4a16``). It is
built in a hidden sibling ``.<name>.partial-<id>``; the card is written last and the
directory is renamed into place only then. So a directory named like a variant is
complete exactly when it holds a card, and an interrupted run leaves only a hidden
``.partial`` directory (safe to delete).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from ray_bench.errors import QuantizationError
from ray_bench.quantize.card import card_path


def variant_name(base_name: str, method: str, scheme: str) -> str:
    """``<base>-<method>-<scheme>``, the one naming convention of quantized variants."""
    return f"{base_name}-{method.lower()}-{scheme.lower()}"


def is_complete(path: str | Path) -> bool:
    """True when ``path`` is a finished variant (its card exists)."""
    return card_path(path).is_file()


def check_target(target: Path, *, overwrite: bool) -> None:
    """Refuse to replace an existing output unless ``overwrite`` is set.

    Raises:
        QuantizationError: ``target`` is complete, or is some other existing path.
    """
    if not target.exists() or overwrite:
        return
    if is_complete(target):
        raise QuantizationError(
            f"output {str(target)!r} already exists and is complete",
            hint="Pass --overwrite to replace it, or --skip-existing to keep it.",
        )
    raise QuantizationError(
        f"output {str(target)!r} exists but is not a ray-bench quantized checkpoint (no card)",
        hint="Remove it, choose another --out, or pass --overwrite to replace it.",
    )


def new_partial_dir(target: Path) -> Path:
    """Create and return an empty hidden temporary sibling of ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp


def commit(tmp: Path, target: Path, *, overwrite: bool) -> Path:
    """Move the finished ``tmp`` directory (card included) to ``target``.

    An existing ``target`` is first moved aside (only with ``overwrite``) and removed
    after the rename, so ``target`` is never a half-replaced mix.

    Raises:
        QuantizationError: ``tmp`` has no card, or ``target`` exists without ``overwrite``.
    """
    if not is_complete(tmp):
        raise QuantizationError(f"internal error: {str(tmp)!r} has no card; refusing to publish it")
    old = None
    if target.exists():
        check_target(target, overwrite=overwrite)
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        target.rename(old)
    tmp.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def discard(tmp: Path) -> None:
    """Remove a temporary directory after a failure (best effort)."""
    shutil.rmtree(tmp, ignore_errors=True)
