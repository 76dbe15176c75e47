"""Pure packing and batching helpers for prompt-once choice scoring (no torch).

A closed question with prompt ids ``p`` (length P) and choices ``c1..ck`` is packed into
one row ``p + c1 + ... + ck`` of length ``P + sum(Ci)``. Each choice restarts its
positions at ``P`` and may attend only to the prompt and to its own earlier tokens, so
every choice sees exactly the context it would see alone, while the prompt is computed
once. The attention rule is expressed with *segment ids*: ``0`` for prompt tokens,
``i + 1`` for the tokens of choice ``i`` and :data:`PAD_SEGMENT` for padding.

Choice token ``t`` of choice ``i`` is predicted by the hidden state of the token before
it: the last prompt token for ``t == 0`` (shared by all choices, so its logits are
computed once), else choice token ``t - 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: Segment id of padding tokens; padding attends only to padding, never the reverse.
PAD_SEGMENT = -1


@dataclass(frozen=True)
class PackedQuestion:
    """One question laid out as a single packed row.

    Attributes:
        input_ids: ``prompt + choice_1 + ... + choice_k``.
        position_ids: Per token; prompt ``0..P-1``, each choice ``P..P+Ci-1``.
        segment_ids: Per token; ``0`` for the prompt, ``i + 1`` for choice ``i``.
        source_positions: Row positions whose logits are needed, without repeats
            (the last prompt token first, then every choice token but each choice's last).
        target_source: Per scored token, the index into ``source_positions`` predicting it.
        target_ids: Per scored token, its token id.
        target_choice: Per scored token, the index of its choice.
        num_tokens: Per choice, how many tokens are scored.
    """

    input_ids: tuple[int, ...]
    position_ids: tuple[int, ...]
    segment_ids: tuple[int, ...]
    source_positions: tuple[int, ...]
    target_source: tuple[int, ...]
    target_ids: tuple[int, ...]
    target_choice: tuple[int, ...]
    num_tokens: tuple[int, ...]

    @property
    def length(self) -> int:
        """Tokens in the packed row (``P + sum(Ci)``)."""
        return len(self.input_ids)


def pack_question(prompt_ids: Sequence[int], choice_ids: Sequence[Sequence[int]]) -> PackedQuestion:
    """Lay out a question's prompt and choices as one packed row.

    Raises:
        ValueError: the prompt is empty, there is no choice, or a choice has no tokens.
    """
    if not prompt_ids:
        raise ValueError("the rendered prompt has no tokens")
    if not choice_ids:
        raise ValueError("the question has no choices")
    for i, ids in enumerate(choice_ids):
        if not ids:
            raise ValueError(f"choice {i} has no tokens after tokenization (empty choice?)")
    p = len(prompt_ids)
    input_ids, positions, segments = list(prompt_ids), list(range(p)), [0] * p
    sources = [p - 1]
    target_source, target_ids, target_choice = [], [], []
    for i, ids in enumerate(choice_ids):
        start = len(input_ids)
        input_ids.extend(ids)
        positions.extend(range(p, p + len(ids)))
        segments.extend([i + 1] * len(ids))
        for t, tok in enumerate(ids):
            if t == 0:
                target_source.append(0)
            else:
                # Choice token t-1 sits at row position start+t-1 and predicts token t.
                sources.append(start + t - 1)
                target_source.append(len(sources) - 1)
            target_ids.append(int(tok))
            target_choice.append(i)
    return PackedQuestion(
        input_ids=tuple(int(t) for t in input_ids),
        position_ids=tuple(positions),
        segment_ids=tuple(segments),
        source_positions=tuple(sources),
        target_source=tuple(target_source),
        target_ids=tuple(target_ids),
        target_choice=tuple(target_choice),
        num_tokens=tuple(len(ids) for ids in choice_ids),
    )


def max_position_needed(prompt_len: int, choice_lens: Sequence[int]) -> int:
    """Largest sequence length a packed question needs (``P + max(Ci)``), not the row length."""
    return prompt_len + max(choice_lens, default=0)


def plan_batches(lengths: Sequence[int], max_batch_tokens: int) -> list[list[int]]:
    """Group rows into batches whose padded size ``rows * longest`` fits the token budget.

    Rows are sorted by length first (length bucketing) so each batch pads little. A row
    longer than the budget gets a batch of its own rather than being dropped.

    Args:
        lengths: Length of each row, indexed by request position.
        max_batch_tokens: Budget of one batch in padded tokens.

    Returns:
        Batches of row indices; every index appears exactly once.
    """
    if max_batch_tokens <= 0:
        raise ValueError(f"max_batch_tokens must be positive, got {max_batch_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # Sorted ascending, so the newest row is the longest of the batch.
        if current and (len(current) + 1) * lengths[i] > max_batch_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def attends(segment_q: int, segment_k: int, pos_q: int, pos_k: int) -> bool:
    """Reference rule of the packed block mask for one (query, key) pair of row positions.

    A token sees earlier-or-same row positions that are prompt tokens or of its own
    segment; padding sees only padding. Mirrors the tensor version used by the engine
    and exists to unit-test it.
    """
    if pos_k > pos_q:
        return False
    if segment_k == segment_q:
        return True
    return segment_k == 0 and segment_q != PAD_SEGMENT
