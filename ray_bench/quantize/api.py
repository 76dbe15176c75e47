"""Make one quantized variant with llmcompressor (in this process).

Order of work, chosen so that cheap failures come first: validate the method x scheme
pair and the output path, load the calibration text, and only then import
llmcompressor and load the model. The checkpoint is written to a temporary directory,
the card last, then renamed into place (:mod:`ray_bench.quantize.output`).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import time
from pathlib import Path
from typing import Any

from ray_bench.config import ModelSpec
from ray_bench.errors import DependencyError, ModelLoadError, QuantizationError
from ray_bench.quantize.calibration import CalibrationData, load_calibration
from ray_bench.provenance import package_versions
from ray_bench.quantize.card import CARD_FORMAT_VERSION, VERSIONED_PACKAGES, scheme_details_from_config, write_card
from ray_bench.quantize.config import CalibrationConfig, MethodOptions
from ray_bench.quantize.methods import ModifierSpec, check_combination
from ray_bench.quantize.output import check_target, commit, discard, new_partial_dir
from ray_bench.quantize.patches import accelerator_available, cpu_pin_memory_workaround
from ray_bench.quantize.plan import VariantTask

log = logging.getLogger(__name__)


def quantize_model(
    base_path: str | Path,
    out_dir: str | Path,
    method: str = "rtn",
    scheme: str = "w4a16",
    *,
    name: str | None = None,
    calibration: CalibrationConfig | None = None,
    options: MethodOptions | None = None,
    overwrite: bool = False,
    dtype: str = "auto",
) -> Path:
    """Quantize a model and return the checkpoint directory ``<out_dir>/<name>-<method>-<scheme>``.

    RTN needs no calibration data and takes about a second on a tiny model, which is
    what the demo uses: ``quantize_model(tiny_dir, out_dir)``.

    Args:
        base_path: Local model directory or Hugging Face id.
        out_dir: Parent directory of the new checkpoint.
        method: ``rtn``, ``gptq``, ``awq``, ``smoothquant-rtn`` or ``smoothquant-gptq``.
        scheme: ``w4a16``, ``w8a16`` or ``w8a8``.
        name: Base name used in the output name (default: last path component).
        calibration: Calibration settings (default: the reference study's hub dataset).
        options: Recipe knobs.
        overwrite: Replace a complete existing output.
        dtype: Dtype the base model is loaded in (``auto``: as stored).

    Raises:
        UnknownNameError: unknown method or scheme.
        QuantizationError: unsupported pair, existing output, or llmcompressor failed.
        ConfigError: bad calibration file.
        DependencyError: llmcompressor is not installed.
        ModelLoadError: the base model cannot be loaded.
    """
    spec = ModelSpec.parse(f"{name}={base_path}" if name else str(base_path))
    task = VariantTask(
        model=spec,
        method=method,
        scheme=scheme,
        out_dir=str(out_dir),
        calibration=calibration or CalibrationConfig(),
        options=options or MethodOptions(),
        overwrite=overwrite,
        dtype=dtype,
    )
    return quantize_variant(task)


def quantize_variant(task: VariantTask, calibration: CalibrationData | None = None) -> Path:
    """Make the variant described by ``task``; see :func:`quantize_model`.

    Args:
        task: The variant.
        calibration: Already loaded calibration data (the runner loads it once per job).
    """
    start = time.perf_counter()
    method, _ = check_combination(task.method, task.scheme)
    target = task.target
    check_target(target, overwrite=task.overwrite)
    if method.needs_calibration and calibration is None:
        calibration = load_calibration(task.calibration)
    if not method.needs_calibration:
        calibration = None
    recipe = method.build(*_scheme_and_options(task))
    model, tokenizer = _load(task)
    quant_s = _run_oneshot(model, tokenizer, recipe, calibration, task)
    tmp = new_partial_dir(target)
    try:
        model.save_pretrained(tmp, save_compressed=True)
        tokenizer.save_pretrained(tmp)
        card = _card(task, recipe, calibration, tmp, wall_time_s=time.perf_counter() - start, quant_s=quant_s)
        write_card(tmp, card)
        return commit(tmp, target, overwrite=task.overwrite)
    except BaseException:
        discard(tmp)
        raise


def _scheme_and_options(task: VariantTask) -> tuple[Any, MethodOptions]:
    from ray_bench.quantize.schemes import get_scheme

    return get_scheme(task.scheme), task.options


def _import_oneshot():
    import contextlib
    import sys

    try:
        # llmcompressor attaches its log to sys.stdout at import; stdout carries our results.
        with contextlib.redirect_stdout(sys.stderr):
            from llmcompressor import oneshot
    except ImportError as exc:
        if getattr(exc, "name", "") and not str(exc.name).startswith("llmcompressor"):
            raise
        raise DependencyError("llmcompressor", "quantize") from None
    _logs_to_stderr()
    return oneshot


def _logs_to_stderr() -> None:
    """Send llmcompressor's console log to stderr: its default sink is stdout, which is ours for results."""
    import importlib
    import sys

    from loguru import logger

    # `from llmcompressor import logger` would give the loguru object it re-exports.
    lc_logger = importlib.import_module("llmcompressor.logger")

    config = lc_logger.LOGGER_CONFIG
    if config.disabled or not config.console_log_level or getattr(lc_logger, "_ray_bench_stderr", False):
        return
    logger.remove()
    logger.add(
        lambda message: sys.stderr.write(message),  # looked up per message: sys.stderr may be swapped
        level=config.console_log_level.upper(),
        format="{time:YYYY-MM-DDTHH:mm:ss} | {function} | {level} - {message}",
        filter=lc_logger.support_log_once,
    )
    if config.log_file or config.log_file_level:  # logger.remove() dropped the file sink too
        logger.add(config.log_file or "llmcompressor.log", level=(config.log_file_level or "INFO").upper(),
                   serialize=True, filter=lc_logger.support_log_once)
    lc_logger._ray_bench_stderr = True


def _load(task: VariantTask):
    _import_oneshot()  # fail on a missing extra before spending time on the model
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"dtype": "auto" if task.dtype == "auto" else getattr(torch, task.dtype)}
    if task.model.revision:
        kwargs["revision"] = task.model.revision
    try:
        tokenizer = AutoTokenizer.from_pretrained(task.model.path, revision=task.model.revision)
        model = AutoModelForCausalLM.from_pretrained(task.model.path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"cannot load base model {task.model.path!r}: {exc}",
            hint="Pass a local model directory or a reachable Hugging Face id to --model.",
        ) from None
    model.eval()
    return model, tokenizer


def _seed(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _run_oneshot(model, tokenizer, recipe: list[ModifierSpec], calibration: CalibrationData | None, task: VariantTask) -> float:
    """Apply ``recipe`` in place and return the seconds spent in ``oneshot``."""
    oneshot = _import_oneshot()
    modifiers = [spec.instantiate() for spec in recipe]
    kwargs: dict[str, Any] = {}
    if calibration is not None:
        from datasets import Dataset

        kwargs = dict(
            dataset=Dataset.from_dict({"text": list(calibration.texts)}),
            num_calibration_samples=len(calibration.texts),
            max_seq_length=task.calibration.max_seq_length,
            # The texts are already in their seeded order; llmcompressor's own shuffle is unseeded.
            shuffle_calibration_samples=False,
            text_column="text",
        )
    _seed(task.calibration.seed)
    start = time.perf_counter()
    try:
        with cpu_pin_memory_workaround(needed=calibration is not None):
            oneshot(model=model, recipe=modifiers, processor=tokenizer, **kwargs)
    except (ValueError, RuntimeError, TypeError, KeyError) as exc:
        raise QuantizationError(
            f"llmcompressor failed on {task.name}: {type(exc).__name__}: {exc}",
            hint=_failure_hint(str(exc)),
        ) from exc
    return time.perf_counter() - start


def _failure_hint(message: str) -> str:
    if "group_size" in message or "divisible" in message:
        return (
            "Group-wise schemes (w4a16, w8a16) need Linear input sizes that are multiples of 128; "
            "add the offending layers to options.ignore or use w8a8."
        )
    if "out of memory" in message.lower():
        return "Reserve more GPUs per task (--gpus-per-task) or lower --calibration-samples/--calibration-max-length."
    return "Run with RAY_BENCH_DEBUG=1 to see the traceback."


def _device_name() -> str:
    import torch

    if not accelerator_available():
        return "cpu"
    accel = getattr(torch, "accelerator", None)
    dev = accel.current_accelerator() if accel is not None else None
    return dev.type if dev is not None else "cuda"


def _card(
    task: VariantTask,
    recipe: list[ModifierSpec],
    calibration: CalibrationData | None,
    ckpt: Path,
    *,
    wall_time_s: float,
    quant_s: float,
) -> dict[str, Any]:
    from ray_bench.quantize.schemes import get_scheme

    scheme = get_scheme(task.scheme)
    config = json.loads((ckpt / "config.json").read_text())
    details = scheme_details_from_config(config)
    weights = next(iter(details["config_groups"].values()), {}).get("weights") or {}
    details.update(
        description=scheme.describe(symmetric=weights.get("symmetric")),
        weight_bits=weights.get("num_bits", scheme.weight_bits),
        activation_bits=scheme.activation_bits,
        group_size=weights.get("group_size"),
        symmetric=weights.get("symmetric"),
        strategy=weights.get("strategy"),
        preset=next((s.kwargs["scheme"] for s in recipe if "scheme" in s.kwargs), None),
    )
    return {
        "format_version": CARD_FORMAT_VERSION,
        "name": task.name,
        "base_model": {"name": task.model.name, "path": task.model.path, "revision": task.model.revision},
        "method": task.method,
        "scheme": task.scheme,
        "scheme_details": details,
        "recipe": [s.to_dict() for s in recipe],
        "calibration": calibration.source if calibration is not None else None,
        "seed": task.calibration.seed,
        "dtype": task.dtype,
        "device": _device_name(),
        "versions": package_versions(VERSIONED_PACKAGES),
        "wall_time_s": round(wall_time_s, 3),
        "oneshot_time_s": round(quant_s, 3),
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
