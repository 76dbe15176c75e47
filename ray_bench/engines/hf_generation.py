"""Batched decoding for the Hugging Face engine: greedy or seeded sampling.

A small explicit loop instead of ``model.generate``: every row owns its random
generator (seeded from the run seed, the question id and the turn), so a sampled
answer does not depend on which other prompts share its batch. Prompts are left-padded;
position ids are derived from the attention mask so padding never shifts a position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class DecodeSettings:
    """How to pick the next token and when to stop.

    Attributes:
        temperature: ``0`` for greedy decoding, else the sampling temperature.
        top_p: Nucleus mass kept when sampling.
        eos_ids: Tokens that end a response (not included in it).
        pad_id: Token written into left padding and into rows that already stopped.
    """

    temperature: float
    top_p: float
    eos_ids: frozenset[int]
    pad_id: int


def pick_next(logits: torch.Tensor, settings: DecodeSettings, generator: torch.Generator | None) -> int:
    """Next token from one row's ``[vocab]`` logits: argmax, or a seeded nucleus sample."""
    logits = logits.float()
    if settings.temperature <= 0 or generator is None:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / settings.temperature, dim=-1)
    if settings.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (always at least one token).
        keep = (torch.cumsum(sorted_probs, dim=-1) - sorted_probs) < settings.top_p
        sorted_probs = torch.where(keep, sorted_probs, torch.zeros_like(sorted_probs))
        choice = torch.multinomial(sorted_probs, 1, generator=generator)
        return int(order[choice])
    return int(torch.multinomial(probs, 1, generator=generator))


def _left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        if prompt:
            ids[row, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
            mask[row, width - len(prompt) :] = 1
    return ids.to(device), mask.to(device)


def decode_batch(
    model: Any,
    prompts: Sequence[Sequence[int]],
    limits: Sequence[int],
    settings: DecodeSettings,
    generators: Sequence[torch.Generator | None],
    device: torch.device,
) -> list[list[int]]:
    """Generate for left-padded ``prompts`` with a KV cache; one token list per prompt.

    Args:
        model: A ``*ForCausalLM`` in eval mode.
        prompts: Prompt token ids per row (non-empty).
        limits: Per row, the most tokens to generate.
        settings: Decoding rule and stop tokens.
        generators: Per row, its sampling generator (``None`` for greedy).
        device: The model's device.

    Returns:
        Per row the generated ids, without the stop token.
    """
    ids, mask = _left_pad(prompts, settings.pad_id, device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    outputs: list[list[int]] = [[] for _ in prompts]
    done = [limit <= 0 for limit in limits]
    cache = None
    with torch.inference_mode():
        while not all(done):
            out = model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            cache = out.past_key_values
            next_ids = _advance(out.logits[:, -1, :], outputs, done, limits, settings, generators)
            ids = torch.tensor(next_ids, dtype=torch.long, device=device)[:, None]
            mask = torch.cat([mask, torch.ones_like(ids)], dim=1)
            positions = positions[:, -1:] + 1
    return outputs


def _advance(
    last: torch.Tensor,
    outputs: list[list[int]],
    done: list[bool],
    limits: Sequence[int],
    settings: DecodeSettings,
    generators: Sequence[torch.Generator | None],
) -> list[int]:
    """Pick each live row's next token, record it, and mark rows that stop; returns the step's ids."""
    if settings.temperature <= 0:
        # One argmax and one device->host copy for the whole batch, not one per row.
        picks = torch.argmax(last.float(), dim=-1).tolist()
    else:
        picks = [None if done[row] else pick_next(last[row], settings, generators[row]) for row in range(len(outputs))]
    next_ids = []
    for row, token in enumerate(picks):
        if done[row]:
            next_ids.append(settings.pad_id)
            continue
        next_ids.append(token)
        if token in settings.eos_ids:
            done[row] = True
            continue
        outputs[row].append(token)
        done[row] = len(outputs[row]) >= limits[row]
    return next_ids


def stop_token_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """EOS ids from the generation config (may be a list, e.g. Llama-3's ``<|eot_id|>``) and the tokenizer."""
    ids: set[int] = set()
    gen_config = getattr(model, "generation_config", None)
    for value in (getattr(gen_config, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return frozenset(ids)
