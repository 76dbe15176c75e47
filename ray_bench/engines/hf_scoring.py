"""Exact choice scoring of packed rows with a Hugging Face causal LM (the torch side).

A row is a prefix tree of one or more questions (see :mod:`ray_bench.engines.packing`):
every prompt prefix shared within the row, and every question's prompt, is run once, and
each choice continues from it through a tree attention mask and naive position ids, so
each choice token is scored exactly as in its own ``prompt + choice`` sequence. The LM
head runs only on the hidden states that predict choice tokens, in chunks so that a
large vocabulary never materializes a ``tokens x vocab`` matrix.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

from ray_bench.engines.packing import PackedRow

#: Config attributes that post-process logits inside ``forward``; with any of them set,
#: the head cannot be applied on its own and the full model forward is used instead.
_LOGIT_POSTPROCESSING = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")

#: Largest ``rows x vocab`` upcast logits chunk materialized at once, in bytes.
_LOGIT_CHUNK_BYTES = 1 << 28

#: One question's result: per-choice log-prob sums and per-choice token counts.
QuestionScore = tuple[tuple[float, ...], tuple[int, ...]]


def attention_pair_cost(model: Any) -> float:
    """FLOPs of one attended (query, key) pair relative to one token's linear FLOPs.

    Per layer a pair costs ``4 * heads * head_dim`` (scores and weighted sum) and a token
    ``2 * (attention + MLP weights)``; the layer count cancels. ``0.0`` (attention
    ignored) when the config lacks the numbers.
    """
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    try:
        hidden, heads, inter = int(cfg.hidden_size), int(cfg.num_attention_heads), int(cfg.intermediate_size)
        kv = int(getattr(cfg, "num_key_value_heads", None) or heads)
        head_dim = int(getattr(cfg, "head_dim", None) or hidden // heads)
    except (AttributeError, TypeError, ValueError):
        return 0.0
    weights = 2 * hidden * heads * head_dim + 2 * hidden * kv * head_dim + 3 * hidden * inter
    return 4 * heads * head_dim / (2 * weights) if weights > 0 else 0.0


def tree_mask(visible_until: torch.Tensor, *, as_bool: bool, dtype: torch.dtype) -> torch.Tensor:
    """The ``[B, 1, L, L]`` attention mask of packed rows with ``visible_until`` ``[B, L]``.

    Query ``q`` sees key ``k`` when ``k <= q < visible_until[k]``: rows lay out their
    prefix tree in pre-order, so ``q`` is inside ``k``'s node's subtree exactly when
    ``k``'s node is an ancestor of (or is) ``q``'s node. Padding keys carry ``L``, so
    padding sees itself and no row of the mask is empty (an all-masked row would give
    NaN that leaks through ``0 * NaN`` in the next layer), while real tokens end before
    the padding and are never seen by it.

    Args:
        visible_until: Per token, the end of its node's subtree (``L`` for padding).
        as_bool: ``True`` for sdpa (``True`` = attend), else an additive float mask.
        dtype: Float dtype of the additive mask.
    """
    length = visible_until.shape[1]
    idx = torch.arange(length, device=visible_until.device)
    causal = idx[None, :] <= idx[:, None]
    inside = idx[None, :, None] < visible_until[:, None, :]
    allowed = (inside & causal)[:, None, :, :]
    if as_bool:
        return allowed
    additive = torch.zeros(allowed.shape, dtype=dtype, device=visible_until.device)
    return additive.masked_fill_(~allowed, torch.finfo(dtype).min)


def split_head(model: Any) -> tuple[Any, Any] | None:
    """``(decoder, lm_head)`` of a causal LM whose logits are ``lm_head(decoder(...))``.

    ``None`` when the model post-processes its logits (softcapping, scaling) or has no
    separable head; the scorer then falls back to the full forward.
    """
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    for name in _LOGIT_POSTPROCESSING:
        if getattr(config, name, None) not in (None, 1, 1.0):
            return None
    decoder = getattr(model, getattr(model, "base_model_prefix", ""), None)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if decoder is None or decoder is model or head is None:
        return None
    return decoder, head


class PackedScorer:
    """Scores packed rows (one or more questions each) with one forward per batch.

    Args:
        model: A loaded ``*ForCausalLM`` in eval mode.
        device: Where the model lives.
        pad_id: Token id written into padding (never attended to by real tokens).
    """

    def __init__(self, model: Any, device: torch.device, pad_id: int) -> None:
        self.model = model
        self.device = device
        self.pad_id = pad_id
        self.split = split_head(model)
        self.keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        impl = getattr(model.config, "_attn_implementation", "sdpa")
        self.bool_mask = impl == "sdpa"
        # model.dtype skips packed integer weights of quantized checkpoints.
        self.mask_dtype = getattr(model, "dtype", torch.float32)
        if not self.mask_dtype.is_floating_point:
            self.mask_dtype = torch.float32
        # Always fp32: bf16/fp16 logits lose too much in the softmax; fp64 doubles the
        # cost of this memory-bound step on CPU and gains little over the fp32 reference.
        self.softmax_dtype = torch.float32

    def score(self, batch: Sequence[PackedRow]) -> list[list[QuestionScore]]:
        """Per row, per question of the row: ``(logprob_sums, num_tokens)``, in ``batch`` order."""
        ids, positions, visible_until = self._collate(batch)
        length = ids.shape[1]
        mask = tree_mask(visible_until, as_bool=self.bool_mask, dtype=self.mask_dtype)
        src, tgt_src, tgt_ids, tgt_choice, offsets = self._targets(batch, length)
        with torch.inference_mode():
            if self.split is not None:
                hidden = self._last_hidden_state(ids, mask, positions)
                rows = hidden.reshape(-1, hidden.shape[-1])[src]
                token_lp = target_logprobs(self.split[1], rows, tgt_src, tgt_ids, self.softmax_dtype)
            else:
                logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False).logits
                rows = logits.reshape(-1, logits.shape[-1])[src]
                token_lp = target_logprobs(None, rows, tgt_src, tgt_ids, self.softmax_dtype)
            sums = torch.zeros(offsets[-1], dtype=torch.float64, device=token_lp.device)
            sums.index_add_(0, tgt_choice, token_lp.double())
        return split_by_question(batch, sums.cpu().tolist(), offsets)

    def _last_hidden_state(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The decoder's output, captured while the *top-level* model runs.

        Calling the decoder directly would skip hooks on the top-level model, such as
        compressed-tensors' decompress-on-first-forward; the top-level call computes
        logits for one position only (``logits_to_keep=1``).
        """
        captured: list[torch.Tensor] = []

        def grab(_module: Any, _args: Any, output: Any) -> None:
            captured.append(output[0] if isinstance(output, tuple) else output.last_hidden_state)

        handle = self.split[0].register_forward_hook(grab)
        try:
            extra = {"logits_to_keep": 1} if self.keeps_logits else {}
            self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False, **extra)
        finally:
            handle.remove()
        return captured[-1]

    def _collate(self, batch: Sequence[PackedRow]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        length = max(row.length for row in batch)
        ids = torch.full((len(batch), length), self.pad_id, dtype=torch.long)
        positions = torch.zeros((len(batch), length), dtype=torch.long)
        # Padding "ends its subtree" at the row end: it sees only padding (see tree_mask).
        visible_until = torch.full((len(batch), length), length, dtype=torch.long)
        for r, row in enumerate(batch):
            n = row.length
            ids[r, :n] = torch.tensor(row.input_ids)
            positions[r, :n] = torch.tensor(row.position_ids)
            visible_until[r, :n] = torch.tensor(row.visible_until)
        return ids.to(self.device), positions.to(self.device), visible_until.to(self.device)

    def _targets(
        self, batch: Sequence[PackedRow], length: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
        """Flat source rows, and per target: source row, token id, global choice index."""
        src: list[int] = []
        tgt_src: list[int] = []
        tgt_ids: list[int] = []
        tgt_choice: list[int] = []
        offsets = [0]
        for r, row in enumerate(batch):
            base_src, base_choice = len(src), offsets[-1]
            src.extend(r * length + p for p in row.source_positions)
            tgt_src.extend(base_src + s for s in row.target_source)
            tgt_ids.extend(row.target_ids)
            tgt_choice.extend(base_choice + c for c in row.target_choice)
            offsets.append(base_choice + len(row.num_tokens))

        def as_tensor(values: list[int]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.long, device=self.device)

        return as_tensor(src), as_tensor(tgt_src), as_tensor(tgt_ids), as_tensor(tgt_choice), offsets


def split_by_question(batch: Sequence[PackedRow], sums: list[float], offsets: list[int]) -> list[list[QuestionScore]]:
    """Cut the flat per-choice sums of a batch into rows, then into each row's questions."""
    out: list[list[QuestionScore]] = []
    for r, row in enumerate(batch):
        questions: list[QuestionScore] = []
        local = 0  # first choice of the question within the row
        for k in row.choices_per_question:
            first = offsets[r] + local
            questions.append((tuple(sums[first : first + k]), row.num_tokens[local : local + k]))
            local += k
        out.append(questions)
    return out


def target_logprobs(
    head: Any,
    rows: torch.Tensor,
    target_rows: torch.Tensor,
    target_ids: torch.Tensor,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Log-probabilities (in ``dtype``) of ``target_ids`` under the logits of ``rows[target_rows]``.

    Uses the fused ``log_softmax`` kernel (the same one a plain reference computation
    uses), in chunks of rows so that a large vocabulary stays within
    :data:`_LOGIT_CHUNK_BYTES`; chunks are large because every head call streams the
    whole ``vocab x hidden`` weight.

    Args:
        head: Maps hidden rows to logits; ``None`` when ``rows`` already are logits.
        rows: ``[N, hidden]`` hidden states (or ``[N, vocab]`` logits).
        target_rows: ``[T]`` index into ``rows`` per target.
        target_ids: ``[T]`` token id per target.
        dtype: Precision of the log-softmax.
    """
    n = rows.shape[0]
    vocab = head.out_features if head is not None and hasattr(head, "out_features") else rows.shape[-1]
    itemsize = torch.empty((), dtype=dtype).element_size()
    chunk = max(1, _LOGIT_CHUNK_BYTES // (itemsize * max(1, vocab)))
    picked = torch.empty(target_rows.shape[0], dtype=dtype, device=rows.device)
    for start in range(0, n, chunk):
        end = min(n, start + chunk)
        logits = head(rows[start:end]) if head is not None else rows[start:end]
        logprobs = torch.log_softmax(logits.to(dtype), dim=-1)
        sel = ((target_rows >= start) & (target_rows < end)).nonzero(as_tuple=True)[0]
        picked[sel] = logprobs[target_rows[sel] - start, target_ids[sel]]
    return picked
