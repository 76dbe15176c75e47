"""Grouping questions into packed rows and rows into batches (pure Python, no torch).

Rows are laid out by :mod:`ray_bench.engines.packing`. Here we decide *which* questions
share a row (those whose prompts share a long enough prefix, so the prefix is computed
once) and which rows share a forward (similar lengths under a padded-token budget).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ray_bench.engines.packing import common_prefix_length
from ray_bench.errors import ConfigError

#: Default of ``min_shared_tokens``: a shared prefix shorter than this is not worth
#: longer rows (chat templates alone share a few tokens between any two prompts).
DEFAULT_MIN_SHARED_TOKENS = 16
#: Default cap of a prefix-shared row: attention over a row grows with its square.
DEFAULT_MAX_ROW_TOKENS = 2048


@dataclass(frozen=True)
class SharingOptions:
    """How questions are grouped into rows (``EngineConfig.options`` of the hf engine).

    Attributes:
        share_prefixes: Pack questions whose prompts share a prefix into one row, so the
            prefix is computed once; ``False`` packs each question on its own.
        min_shared_tokens: Fewest prompt tokens a group of questions must share.
        max_row_tokens: Longest row a group may pack into.
        pair_cost: The model's cost of one attended pair relative to one token
            (:func:`ray_bench.engines.hf_scoring.attention_pair_cost`); rows stop
            growing when attention over the longer row would cost more than the
            shared tokens save.
    """

    share_prefixes: bool = True
    min_shared_tokens: int = DEFAULT_MIN_SHARED_TOKENS
    max_row_tokens: int = DEFAULT_MAX_ROW_TOKENS
    pair_cost: float = 0.0

    def describe(self) -> dict[str, str]:
        """For the run manifest (``EngineInfo.extra``)."""
        if not self.share_prefixes:
            return {"scoring": "packed prompt-once per question (tree mask)", "share_prefixes": "false"}
        return {
            "scoring": "packed prefix tree across questions (tree mask)",
            "share_prefixes": "true",
            "min_shared_tokens": str(self.min_shared_tokens),
            "max_row_tokens": str(self.max_row_tokens),
            "attention_pair_cost": f"{self.pair_cost:.3g}",
        }


def sharing_options(options: Mapping[str, Any], max_batch_tokens: int, pair_cost: float = 0.0) -> SharingOptions:
    """Read :class:`SharingOptions` from ``EngineConfig.options`` (other keys are ignored).

    Torch-free, so options can be checked before a model is loaded.

    ``max_row_tokens`` defaults to the smaller of :data:`DEFAULT_MAX_ROW_TOKENS` and the
    batch budget, so one row always fits a batch.

    Raises:
        ConfigError: a value has the wrong type or range.
    """
    share = options.get("share_prefixes", True)
    if not isinstance(share, bool):
        raise ConfigError(f"hf option share_prefixes must be true or false, got {share!r}")
    limits = {
        "min_shared_tokens": options.get("min_shared_tokens", DEFAULT_MIN_SHARED_TOKENS),
        "max_row_tokens": options.get("max_row_tokens", min(DEFAULT_MAX_ROW_TOKENS, max_batch_tokens)),
    }
    for key, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"hf option {key} must be a positive integer, got {value!r}")
    return SharingOptions(share, **limits, pair_cost=pair_cost)


#: Every ``EngineConfig.options`` key the hf engine understands.
HF_OPTION_KEYS = (
    "attn_implementation", "trust_remote_code", "share_prefixes", "min_shared_tokens", "max_row_tokens", "activation_quant",
)


def check_hf_options(options: Mapping[str, Any]) -> None:
    """Refuse unknown or invalid hf engine options (torch-free: runs on the driver).

    Raises:
        ConfigError: an unknown key (closest match suggested) or a bad value.
    """
    import difflib

    for key in options:
        if key not in HF_OPTION_KEYS:
            close = difflib.get_close_matches(key, HF_OPTION_KEYS, n=1)
            raise ConfigError(
                f"unknown hf engine option {key!r}" + (f"; did you mean {close[0]!r}?" if close else ""),
                hint=f"hf engine options: {', '.join(HF_OPTION_KEYS)}.",
            )
    attn = options.get("attn_implementation", "sdpa")
    if attn not in ("sdpa", "eager"):
        raise ConfigError(f"hf option attn_implementation must be 'sdpa' or 'eager', got {attn!r}")
    if not isinstance(options.get("trust_remote_code", False), bool):
        raise ConfigError("hf option trust_remote_code must be true or false")
    from ray_bench.engines.hf_quant import ACTIVATION_QUANT_MODES

    if options.get("activation_quant", "kernel") not in ACTIVATION_QUANT_MODES:
        raise ConfigError(
            f"hf option activation_quant must be one of {', '.join(ACTIVATION_QUANT_MODES)}, "
            f"got {options['activation_quant']!r}",
            hint="'kernel' quantizes W8A8 activations as vLLM's int8 kernels do (the default).",
        )
    sharing_options(options, DEFAULT_MAX_ROW_TOKENS)


def max_position_needed(prompt_len: int, choice_lens: Sequence[int]) -> int:
    """Largest sequence length a packed question needs (``P + max(Ci)``), not the row length."""
    return prompt_len + max(choice_lens, default=0)


def group_questions(
    prompts: Sequence[Sequence[int]],
    choice_tokens: Sequence[int],
    *,
    min_shared_tokens: int,
    max_row_tokens: int,
    pair_cost: float = 0.0,
) -> list[list[int]]:
    """Group questions whose prompts share a prefix, so that each group packs into one row.

    Prompts are sorted by their token ids; consecutive questions join a group while the
    group's common prefix stays at least ``min_shared_tokens`` long and the packed row
    stays within ``max_row_tokens``. In sorted order a prompt's longest common prefix
    with any earlier group member is the one with its predecessor, so the row length
    (the group's prompt trie plus every choice) grows by exactly
    ``len(prompt) - shared + choice_tokens`` per question, and the group's common prefix
    is the smallest of these consecutive shares.

    Args:
        prompts: Prompt ids per question.
        choice_tokens: Per question, the total tokens of its choices.
        min_shared_tokens: Fewest prompt tokens a group must share (at least 1); below
            it a question starts a group of its own.
        max_row_tokens: Longest packed row; a question that is longer on its own still
            gets a group of one.
        pair_cost: Cost of one attended (query, key) pair relative to one token's pass
            through the layers (see :func:`joins_row`); ``0`` ignores attention.

    Returns:
        Groups of question indices, each in sorted-prompt order; every index appears
        exactly once.
    """
    if min_shared_tokens < 1:
        raise ValueError(f"min_shared_tokens must be at least 1, got {min_shared_tokens}")
    order = sorted(range(len(prompts)), key=lambda i: (tuple(prompts[i]), i))
    groups: list[list[int]] = []
    current: list[int] = []
    row = 0
    for i in order:
        alone = len(prompts[i]) + choice_tokens[i]
        if current:
            shared = common_prefix_length(prompts[current[-1]], prompts[i])
            fits = shared >= min_shared_tokens and row + alone - shared <= max_row_tokens
            if fits and joins_row(row, alone, shared, pair_cost):
                current.append(i)
                row += alone - shared
                continue
            groups.append(current)
        current, row = [i], alone
    if current:
        groups.append(current)
    return groups


def joins_row(row: int, alone: int, shared: int, pair_cost: float) -> bool:
    """Whether adding a question to a row of ``row`` tokens is cheaper than its own row.

    The attention mask of a row is dense, so a row of ``L`` tokens costs about
    ``L + pair_cost * L**2`` token-equivalents whatever the tree. Joining skips the
    ``shared`` tokens but makes every pair of the longer row pay attention; on a small
    model with short shared prefixes (long choices) long rows are slower than separate ones.

    Args:
        row: Tokens in the row so far.
        alone: Tokens of the question's own row (prompt plus choices).
        shared: Prompt tokens it shares with the row.
        pair_cost: Cost of one (query, key) pair relative to one token.
    """
    added = alone - shared
    extra_pairs = (row + added) ** 2 - row**2 - alone**2
    return shared >= pair_cost * extra_pairs


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
