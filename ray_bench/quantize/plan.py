"""Records of one quantization variant (the unit of work and of reporting).

Pure data: the CLI expands a :class:`~ray_bench.quantize.config.QuantizeJobConfig`
into :class:`VariantTask` records, the Ray runner ships them to workers, and every
variant comes back as a :class:`VariantResult`, success or failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ray_bench.config import ModelSpec
from ray_bench.quantize.config import CalibrationConfig, MethodOptions, QuantizeJobConfig
from ray_bench.quantize.output import variant_name


@dataclass(frozen=True)
class VariantTask:
    """Everything needed to make one quantized variant.

    Attributes:
        model: The base model.
        method: Method name.
        scheme: Scheme name.
        out_dir: Parent directory of the variant's checkpoint.
        calibration: Calibration settings (unused by data-free methods).
        options: Recipe knobs.
        overwrite: Replace a complete existing output.
        dtype: Dtype the base model is loaded in.
    """

    model: ModelSpec
    method: str
    scheme: str
    out_dir: str
    calibration: CalibrationConfig = CalibrationConfig()
    options: MethodOptions = MethodOptions()
    overwrite: bool = False
    dtype: str = "auto"

    @property
    def name(self) -> str:
        """``<base>-<method>-<scheme>``."""
        return variant_name(self.model.name, self.method, self.scheme)

    @property
    def target(self) -> Path:
        """The checkpoint directory this task writes."""
        return Path(self.out_dir) / self.name


@dataclass(frozen=True)
class VariantResult:
    """Outcome of one variant.

    Attributes:
        name: Variant name.
        status: ``ok``, ``skipped`` (complete output kept) or ``failed``.
        path: Checkpoint directory (``None`` when failed).
        error: Why it failed (``None`` otherwise).
        hint: What to do about the failure.
        wall_time_s: Seconds the task took.
        card: The variant's quantization card (``None`` when failed).
    """

    name: str
    status: Literal["ok", "skipped", "failed"]
    path: str | None = None
    error: str | None = None
    hint: str | None = None
    wall_time_s: float = 0.0
    card: dict[str, Any] | None = None


def expand(config: QuantizeJobConfig) -> list[VariantTask]:
    """One task per model x variant, models outermost (the order of the report)."""
    return [
        VariantTask(
            model=model,
            method=v.method,
            scheme=v.scheme,
            out_dir=str(config.out_dir),
            calibration=config.calibration,
            options=config.options,
            overwrite=config.overwrite,
            dtype=config.dtype,
        )
        for model in config.models
        for v in config.variants
    ]

