"""Random-weight benchmark models built in memory from a shape (no download, no disk).

Presets copy the architecture numbers of public checkpoints so a GPU run measures the
real compute shape; the weights are random, which does not matter for speed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from ray_bench.errors import ConfigError


@dataclass(frozen=True)
class ModelShape:
    """Architecture numbers of a decoder-only LM.

    Attributes:
        arch: ``llama`` or ``qwen2`` (Qwen2 adds q/k/v biases).
        hidden: Hidden size.
        layers: Decoder layers.
        vocab: Vocabulary size of the embedding and LM head.
        intermediate: MLP width.
        heads: Attention heads.
        kv_heads: Key/value heads (grouped-query attention).
        tie_embeddings: Whether the LM head shares the embedding matrix.
        max_positions: ``max_position_embeddings``.
    """

    arch: str = "llama"
    hidden: int = 256
    layers: int = 8
    vocab: int = 32000
    intermediate: int = 1024
    heads: int = 4
    kv_heads: int = 2
    tie_embeddings: bool = False
    max_positions: int = 4096

    def with_overrides(self, **overrides: Any) -> ModelShape:
        """A copy with the non-``None`` overrides applied."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON output."""
        return asdict(self)


#: The default CPU benchmark model (~24M parameters).
DEFAULT_SHAPE = ModelShape()

#: Shapes of public models for GPU runs (random weights, built from the config only).
PRESETS: dict[str, ModelShape] = {
    "bench-25m": DEFAULT_SHAPE,
    "qwen2.5-0.5b": ModelShape("qwen2", 896, 24, 151936, 4864, 14, 2, True, 32768),
    "qwen2.5-1.5b": ModelShape("qwen2", 1536, 28, 151936, 8960, 12, 2, True, 32768),
    "qwen2.5-7b": ModelShape("qwen2", 3584, 28, 152064, 18944, 28, 4, False, 32768),
    "llama-3.2-1b": ModelShape("llama", 2048, 16, 128256, 8192, 32, 8, True, 131072),
    "llama-3.1-8b": ModelShape("llama", 4096, 32, 128256, 14336, 32, 8, False, 131072),
}


def resolve_shape(preset: str | None, **overrides: Any) -> ModelShape:
    """The preset's shape (default :data:`DEFAULT_SHAPE`) with flag overrides applied."""
    if preset is None:
        return DEFAULT_SHAPE.with_overrides(**overrides)
    if preset not in PRESETS:
        from ray_bench.errors import UnknownNameError

        raise UnknownNameError("model preset", preset, PRESETS)
    return PRESETS[preset].with_overrides(**overrides)


def build_random_model(shape: ModelShape, *, dtype: Any, device: Any, seed: int = 0) -> Any:
    """Instantiate a random-weight causal LM of ``shape`` directly on ``device`` in ``dtype``.

    Raises:
        ConfigError: the shape is inconsistent (e.g. heads do not divide the hidden size).
    """
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    if shape.hidden % shape.heads or shape.heads % shape.kv_heads:
        raise ConfigError(
            f"heads ({shape.heads}) must divide hidden ({shape.hidden}) and be a multiple of kv heads ({shape.kv_heads})"
        )
    common = dict(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=shape.max_positions,
        tie_word_embeddings=shape.tie_embeddings,
    )
    if shape.arch == "llama":
        config = LlamaConfig(**common)
    elif shape.arch == "qwen2":
        config = Qwen2Config(**common)
    else:
        raise ConfigError(f"arch must be 'llama' or 'qwen2', got {shape.arch!r}")
    torch.manual_seed(seed)
    # Building under the device context initialises weights where they will run, which
    # matters for 7B-sized presets on a GPU.
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model.eval()


def count_parameters(model: Any) -> dict[str, int]:
    """Total parameters and the decoder-layer share (what a token's linear FLOPs scale with)."""
    total = sum(p.numel() for p in model.parameters())
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    layers = sum(p.numel() for p in decoder.layers.parameters())
    return {"total": total, "layers": layers}
