"""A set of quantized tiny checkpoints: one trained base and its method x scheme variants.

Made in the quantization environment (llmcompressor) and read in the vLLM environment
(the two pin different compressed-tensors versions, so no one environment can do both):
``ray-bench bench quantized-set --out DIR`` writes the checkpoints and ``DIR/set.json``;
the engine-gap benchmark (:mod:`ray_bench.bench.engine_gap`) and the vLLM tests read it.
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray_bench.errors import ConfigError, DependencyError

INDEX_FILE = "set.json"
METHODS = ("rtn", "gptq", "awq", "smoothquant-rtn", "smoothquant-gptq")
SCHEMES = ("w4a16", "w8a16", "w8a8")


@dataclass(frozen=True)
class QuantizedSet:
    """The checkpoints of one set.

    Attributes:
        root: The set's directory.
        base: The unquantized base checkpoint.
        variants: ``(method, scheme) -> checkpoint``.
        failed: ``(method, scheme) -> why`` for the variants llmcompressor refused or failed.
    """

    root: Path
    base: Path
    variants: dict[tuple[str, str], Path]
    failed: dict[tuple[str, str], str]


def build_quantized_set(
    out_dir: str | Path,
    *,
    methods: Sequence[str] = METHODS,
    schemes: Sequence[str] = SCHEMES,
    train_steps: int = 60,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> QuantizedSet:
    """Train a tiny Qwen2 base (hidden 128, dims multiples of 128) and quantize it.

    Calibration uses 16 generated sentences of 64 tokens (local, no hub). A variant that
    fails is recorded in ``failed`` and the others go on.

    Raises:
        DependencyError: llmcompressor is not installed (the quantization environment).
    """
    from ray_bench.demo.tiny import default_corpus
    from ray_bench.demo.train import train_tiny_model
    from ray_bench.quantize.api import quantize_model
    from ray_bench.quantize.config import CalibrationConfig

    say = log or (lambda _m: None)
    failed: dict[tuple[str, str], str] = {}
    pairs = _pairs(methods, schemes, failed)  # unknown names fail here, before any training
    # Checked first: without llmcompressor every variant would fail after the training.
    if importlib.util.find_spec("llmcompressor") is None:
        raise DependencyError("llmcompressor", "quantize")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    base = root / "tiny"
    if not (base / "config.json").is_file():
        say(f"training the tiny base ({train_steps} steps)")
        train_tiny_model(base, steps=train_steps, batch_size=8, seq_len=48, arch="qwen2", seed=seed)
    calib_path = root / "calibration.jsonl"
    calib_path.write_text("\n".join(json.dumps({"text": t}) for t in default_corpus(200, seed=11)) + "\n")
    calib = CalibrationConfig(source=str(calib_path), num_samples=16, max_seq_length=64, template="{text}", seed=seed)
    variants: dict[tuple[str, str], Path] = {}
    for method, scheme in pairs:
        started = time.time()
        try:
            path = quantize_model(base, root, method, scheme, name="tiny", calibration=calib, overwrite=True)
        except Exception as exc:  # noqa: BLE001 - one failed variant must not stop the set
            failed[(method, scheme)] = f"{type(exc).__name__}: {exc}"
            say(f"{method} {scheme}: failed ({exc})")
            continue
        variants[(method, scheme)] = path
        say(f"{method} {scheme}: {path.name} ({time.time() - started:.1f} s)")
    qset = QuantizedSet(root, base, variants, failed)
    _write_index(qset)
    return qset


def _pairs(methods: Sequence[str], schemes: Sequence[str], failed: dict[tuple[str, str], str]) -> list[tuple[str, str]]:
    """The supported (method, scheme) pairs; the refused ones go to ``failed`` with the reason."""
    from ray_bench.errors import QuantizationError
    from ray_bench.quantize.methods import check_combination

    pairs = []
    for method in methods:
        for scheme in schemes:
            try:
                check_combination(method, scheme)
            except QuantizationError as exc:
                failed[(method, scheme)] = str(exc)
                continue
            pairs.append((method, scheme))
    return pairs


def _write_index(qset: QuantizedSet) -> None:
    index: dict[str, Any] = {
        "base": qset.base.name,
        "variants": [{"method": m, "scheme": s, "path": p.name} for (m, s), p in qset.variants.items()],
        "failed": [{"method": m, "scheme": s, "error": e} for (m, s), e in qset.failed.items()],
    }
    (qset.root / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")


def read_quantized_set(root: str | Path) -> QuantizedSet:
    """Read a set written by :func:`build_quantized_set`.

    Raises:
        ConfigError: ``root`` holds no ``set.json`` or a checkpoint it lists is missing.
    """
    root = Path(root)
    path = root / INDEX_FILE
    if not path.is_file():
        raise ConfigError(
            f"{path} does not exist",
            hint="Build the set in the quantization environment: ray-bench bench quantized-set --out DIR",
        )
    index = json.loads(path.read_text())
    variants = {(v["method"], v["scheme"]): root / v["path"] for v in index["variants"]}
    for ckpt in [root / index["base"], *variants.values()]:
        if not (ckpt / "config.json").is_file():
            raise ConfigError(f"{path} lists {ckpt}, which is not a checkpoint", hint="Rebuild the set.")
    failed = {(v["method"], v["scheme"]): v["error"] for v in index.get("failed", [])}
    return QuantizedSet(root, root / index["base"], variants, failed)
