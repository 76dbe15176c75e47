"""The quantization card: ``quantization_card.json`` inside every quantized checkpoint.

The card is the provenance of a variant (recipe, scheme details, calibration, seed,
package versions, wall time) and the marker of a *complete* output: it is written last,
in a temporary directory that is renamed into place only afterwards (see
:mod:`ray_bench.quantize.output`). This module imports only the standard library, so
the run manifest can call :func:`read_card` anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ray_bench.atomic import write_json_atomic
from ray_bench.errors import QuantizationError

#: File name of the card inside the checkpoint directory.
CARD_NAME = "quantization_card.json"
#: Bumped when the card's fields change incompatibly.
CARD_FORMAT_VERSION = 1

#: Packages whose versions go into the card.
VERSIONED_PACKAGES = ("llmcompressor", "compressed-tensors", "transformers", "torch", "accelerate", "datasets", "ray-bench")


def card_path(model_path: str | Path) -> Path:
    """Where the card of the checkpoint at ``model_path`` lives."""
    return Path(model_path) / CARD_NAME


def read_card(model_path: str | Path) -> dict[str, Any] | None:
    """Return the quantization card of a checkpoint, or ``None`` when it has none.

    ``None`` means "not a ray-bench quantized checkpoint": a hub id, a base model, or a
    third-party quantized model.

    Args:
        model_path: Checkpoint directory (or any string, e.g. a Hugging Face id).

    Raises:
        QuantizationError: the card exists but is not a JSON object.
    """
    path = card_path(model_path)
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise QuantizationError(f"cannot read quantization card {str(path)!r}: {exc}") from None
    try:
        card = json.loads(text)
    except json.JSONDecodeError as exc:
        raise QuantizationError(
            f"quantization card {str(path)!r} is not valid JSON: {exc.msg} at line {exc.lineno}",
            hint="Re-create the variant with `ray-bench quantize ... --overwrite`.",
        ) from None
    if not isinstance(card, dict):
        raise QuantizationError(f"quantization card {str(path)!r} must hold a JSON object, got {type(card).__name__}")
    return card


def write_card(model_path: str | Path, card: dict[str, Any]) -> Path:
    """Write ``card`` as ``quantization_card.json`` into ``model_path`` and return its path."""
    path = card_path(model_path)
    write_json_atomic(path, card)
    return path


def scheme_details_from_config(config: dict[str, Any]) -> dict[str, Any]:
    """What the saved ``config.json`` says about the quantization (the authoritative details).

    Args:
        config: The checkpoint's parsed ``config.json``.

    Returns:
        ``format``, ``ignore`` and per config group the weight and activation arguments
        (bits, strategy, group size, symmetric, dynamic). Empty when not quantized.
    """
    qc = config.get("quantization_config") or {}
    groups = {}
    for name, group in (qc.get("config_groups") or {}).items():
        groups[name] = {
            "targets": group.get("targets"),
            "weights": _args(group.get("weights")),
            "input_activations": _args(group.get("input_activations")),
        }
    return {
        "quant_method": qc.get("quant_method"),
        "format": qc.get("format"),
        "ignore": qc.get("ignore"),
        "config_groups": groups,
    }


def _args(args: dict[str, Any] | None) -> dict[str, Any] | None:
    if not args:
        return None
    keys = ("num_bits", "type", "strategy", "group_size", "symmetric", "dynamic", "actorder", "observer")
    return {k: args.get(k) for k in keys}


def summarize_card(card: dict[str, Any]) -> str:
    """One line for the CLI: method, scheme details, calibration and wall time."""
    scheme = card.get("scheme_details") or {}
    cal = card.get("calibration")
    if cal is None:
        cal_text = "no calibration"
    else:
        where = cal.get("dataset") or cal.get("path")
        cal_text = f"{cal.get('num_samples')} samples of {where} (seed {cal.get('seed')})"
    return (
        f"{card.get('method')} {card.get('scheme')}: {scheme.get('description', '?')}; "
        f"{cal_text}; {card.get('wall_time_s', float('nan')):.1f} s on {card.get('device')}"
    )
