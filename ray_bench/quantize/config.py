"""Pydantic models of ``ray-bench quantize`` (YAML ``--config`` plus flag overrides).

Every model forbids unknown keys and validates values; nothing is clamped. The
defaults reproduce the reference study's calibration (reference-benchmark.md 5.2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ray_bench.config import ModelList

#: The reference study's calibration set and its prompt wrapper (notes 5.2).
DEFAULT_CALIBRATION_DATASET = "neuralmagic/LLM_compression_calibration"
DEFAULT_CALIBRATION_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n{text}"
)
#: Suffixes read as local calibration files.
CALIBRATION_FILE_SUFFIXES = (".txt", ".jsonl", ".json", ".parquet")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CalibrationConfig(_Strict):
    """Where calibration text comes from and how much of it is used.

    Attributes:
        source: Hugging Face dataset id, or a local ``.txt`` (one sample per non-empty
            line), ``.jsonl``/``.json`` (one object per line) or ``.parquet`` file.
        split: Dataset split (hub datasets only).
        text_field: Column or JSON key holding the text (JSONL/Parquet/hub).
        num_samples: Samples drawn (after a seeded shuffle); more than available is an error.
        max_seq_length: Tokens per sample after truncation.
        template: Format string with ``{text}`` applied to every sample.
        seed: Seed of the shuffle and of the quantization run.
    """

    source: str = DEFAULT_CALIBRATION_DATASET
    split: str = "train"
    text_field: str = "text"
    num_samples: int = Field(default=512, gt=0)
    max_seq_length: int = Field(default=6144, gt=0)
    template: str = DEFAULT_CALIBRATION_TEMPLATE
    seed: int = 0

    @field_validator("template")
    @classmethod
    def _has_placeholder(cls, v: str) -> str:
        if "{text}" not in v:
            raise ValueError("template must contain '{text}'")
        return v

    @property
    def is_local(self) -> bool:
        """True when ``source`` names a local file rather than a hub dataset id."""
        p = Path(self.source).expanduser()
        return p.exists() or p.suffix.lower() in CALIBRATION_FILE_SUFFIXES or self.source.startswith((".", "/", "~"))


class MethodOptions(_Strict):
    """Knobs of the recipes; the defaults follow the reference study.

    Attributes:
        ignore: Modules left unquantized (llmcompressor ``ignore`` patterns).
        smoothing_strength: SmoothQuant migration strength alpha.
        dampening_frac: GPTQ Hessian dampening.
        duo_scaling: AWQ scale search over activations and weights (``both`` tries both).
    """

    ignore: tuple[str, ...] = ("lm_head",)
    smoothing_strength: float = Field(default=0.8, gt=0.0, lt=1.0)
    dampening_frac: float = Field(default=0.01, gt=0.0, lt=1.0)
    duo_scaling: bool | Literal["both"] = True


class Variant(_Strict):
    """One method x scheme pair to make of every model."""

    method: str
    scheme: str

    @model_validator(mode="after")
    def _valid_pair(self) -> Variant:
        from ray_bench.quantize.methods import check_combination

        check_combination(self.method, self.scheme)
        return self

    @classmethod
    def parse(cls, text: str) -> Variant:
        """Parse ``METHOD:SCHEME`` (e.g. ``smoothquant-rtn:w4a16``)."""
        method, sep, scheme = text.partition(":")
        if not sep or not method or not scheme:
            from ray_bench.errors import ConfigError

            raise ConfigError(f"variant {text!r} must look like METHOD:SCHEME", hint="E.g. gptq:w4a16.")
        return cls(method=method.strip().lower(), scheme=scheme.strip().lower())


class QuantizeResources(_Strict):
    """What each quantization task reserves in Ray.

    Attributes:
        device: ``auto`` uses GPUs when the cluster has any, else CPUs.
        gpus_per_task: GPUs per variant in GPU mode (large models need several).
        cpus_per_task: CPUs per variant in CPU mode.
        max_parallel: Upper bound on variants running at once (``None``: as resources allow).
        gpus_per_model: GPUs per variant of the named models, overriding ``gpus_per_task``.
    """

    device: Literal["auto", "cpu", "gpu"] = "auto"
    gpus_per_task: float = Field(default=1, gt=0)
    cpus_per_task: float = Field(default=1.0, gt=0)
    max_parallel: int | None = Field(default=None, gt=0)
    gpus_per_model: dict[str, float] = Field(default_factory=dict)

    @field_validator("gpus_per_model")
    @classmethod
    def _positive(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: g for k, g in v.items() if g <= 0}
        if bad:
            raise ValueError(f"GPU counts must be positive, got {bad}")
        return v

    def gpus_for(self, model_name: str) -> float:
        """GPUs one variant of ``model_name`` reserves in GPU mode."""
        return self.gpus_per_model.get(model_name, self.gpus_per_task)


class QuantizeEnvironment(_Strict):
    """Where quantization code runs (llmcompressor cannot share vLLM's environment).

    Attributes:
        python: Interpreter of a separate venv with ``ray-bench[quantize]`` (same Python
            and Ray versions as the driver); tasks run there through Ray's
            ``runtime_env={"py_executable": ...}``. ``None``: this interpreter, or the
            ``RAY_BENCH_QUANT_PYTHON`` environment variable when set.
        pip: Packages for a Ray ``pip`` runtime environment instead (needs an index).
        env_vars: Extra environment variables of the tasks.
    """

    python: str | None = None
    pip: tuple[str, ...] = ()
    env_vars: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_kind(self) -> QuantizeEnvironment:
        if self.python and self.pip:
            raise ValueError("give either environment.python or environment.pip, not both")
        return self


class QuantizeJobConfig(_Strict):
    """The whole configuration of ``ray-bench quantize``.

    Attributes:
        models: Base models (``NAME=PATH_OR_HF_ID`` strings or mappings); names must be unique.
        variants: Method x scheme pairs made of every model.
        out_dir: Parent directory; each variant goes to ``<out_dir>/<name>-<method>-<scheme>``.
        calibration: Calibration data (ignored by data-free methods).
        options: Recipe knobs.
        resources: Ray task resources.
        environment: Where the tasks run.
        overwrite: Replace complete outputs instead of refusing.
        skip_existing: Leave complete outputs alone and report them as skipped.
        dtype: Dtype the base model is loaded in (``auto``: as stored).
        ray_address: Existing Ray cluster; ``None`` starts a local one when needed.
    """

    models: ModelList
    variants: list[Variant] = Field(min_length=1)
    out_dir: Path
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    options: MethodOptions = Field(default_factory=MethodOptions)
    resources: QuantizeResources = Field(default_factory=QuantizeResources)
    environment: QuantizeEnvironment = Field(default_factory=QuantizeEnvironment)
    overwrite: bool = False
    skip_existing: bool = False
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    ray_address: str | None = None

    @field_validator("variants", mode="before")
    @classmethod
    def _parse_variants(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [Variant.parse(x) if isinstance(x, str) else x for x in v]
        return v

    @model_validator(mode="after")
    def _unique(self) -> QuantizeJobConfig:
        if self.overwrite and self.skip_existing:
            raise ValueError("overwrite and skip_existing exclude each other")
        for label, keys in (
            ("model names", [m.name for m in self.models]),
            ("variants", [(v.method, v.scheme) for v in self.variants]),
        ):
            dupes = sorted({str(k) for k in keys if keys.count(k) > 1})
            if dupes:
                raise ValueError(f"{label} must be unique, repeated: {dupes}")
        unknown = sorted(set(self.resources.gpus_per_model) - {m.name for m in self.models})
        if unknown:
            raise ValueError(f"resources.gpus_per_model names unknown models: {unknown}")
        return self
