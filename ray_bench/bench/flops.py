"""Model FLOPs of the scoring approaches and the measured peak of the machine."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ray_bench.bench.approaches import Tokenized
from ray_bench.engines.packing import PackedRow, pack_question


@dataclass(frozen=True)
class FlopModel:
    """Forward FLOPs of a decoder-only LM (2 per multiply-add).

    Attributes:
        layer_params: Parameters in the decoder layers (linear work per token is twice this).
        hidden: Hidden size (LM head work per logit row is ``2 * hidden * vocab``).
        vocab: Vocabulary size.
        layers: Decoder layers.
        attn_width: ``heads * head_dim``; a (query, key) pair costs ``4 * attn_width`` per layer.
    """

    layer_params: int
    hidden: int
    vocab: int
    layers: int
    attn_width: int

    def total(self, tokens: int, pairs: int, logit_rows: int) -> float:
        """FLOPs for ``tokens`` through the layers, ``pairs`` attended pairs and ``logit_rows`` head rows."""
        return (
            2.0 * self.layer_params * tokens
            + 4.0 * self.attn_width * self.layers * pairs
            + 2.0 * self.hidden * self.vocab * logit_rows
        )


def flop_model_of(model: Any, layer_params: int) -> FlopModel:
    """Read the FLOP-relevant numbers from a loaded model's config."""
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return FlopModel(
        layer_params=layer_params,
        hidden=cfg.hidden_size,
        vocab=cfg.vocab_size,
        layers=cfg.num_hidden_layers,
        attn_width=cfg.num_attention_heads * head_dim,
    )


def _causal_pairs(n: int) -> int:
    return n * (n + 1) // 2


def separate_sequence_flops(fm: FlopModel, questions: Sequence[Tokenized]) -> float:
    """Useful FLOPs when every prompt+choice runs as its own sequence with full logits."""
    total = 0.0
    for q in questions:
        for ids in q.choice_ids:
            n = len(q.prompt_ids) + len(ids)
            total += fm.total(n, _causal_pairs(n), n)
    return total


def packed_flops(fm: FlopModel, questions: Sequence[Tokenized]) -> float:
    """Useful FLOPs of prompt-once scoring: prompt once, each choice attends prompt + itself."""
    return row_flops(fm, [pack_question(q.prompt_ids, q.choice_ids) for q in questions])


def row_flops(fm: FlopModel, rows: Sequence[PackedRow]) -> float:
    """Useful FLOPs of packed rows (prefix trees): every row token once, head rows only.

    A token at naive position ``p`` attends to exactly ``p + 1`` keys, whatever the tree.
    """
    total = 0.0
    for row in rows:
        pairs = sum(p + 1 for p in row.position_ids)
        total += fm.total(row.length, pairs, len(row.source_positions))
    return total


def measure_peak_flops(dtype: Any, device: Any, *, size: int | None = None, repeats: int = 5) -> float:
    """Best observed FLOP/s of a large square matmul in ``dtype`` on ``device``."""
    import torch

    from ray_bench.bench.approaches import sync

    n = size or (8192 if getattr(device, "type", "cpu") == "cuda" else 2048)
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    best = float("inf")
    with torch.inference_mode():
        a @ b  # warm-up: kernel selection, thread pool start
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            a @ b
            sync(device)
            best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best
