"""Prompt and choice token ids, shared by every engine so that all score the same spans.

The rules (reference notes 2 and 8, pitfalls.md):

* the chat template is rendered with ``add_generation_prompt=True`` **straight to token
  ids**, so a template that starts with BOS is never given a second one;
* a choice is tokenized on its own without special tokens and appended; it gets a
  leading space only when the rendered prompt does not end in whitespace;
* no EOS or end-of-turn token follows the choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray_bench.engines.base import Message, ScoreRequest

#: Version of the prompt-rendering rules above; recorded in every result shard so that a
#: change of what models see never mixes with shards rendered the old way. Bump on any change.
PROMPT_VERSION = 1

#: Used when a tokenizer has no chat template (the reference's fallback format).
FALLBACK_TEMPLATE = "User: {content}\n\nAssistant: "


def build_messages(turns: Sequence[str], responses: Sequence[str] = (), system_prompt: str | None = None) -> list[dict[str, str]]:
    """Chat messages for ``turns`` answered so far by ``responses`` (one fewer, or equal)."""
    messages: list[dict[str, str]] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    for i, turn in enumerate(turns):
        messages.append({"role": "user", "content": turn})
        if i < len(responses):
            messages.append({"role": "assistant", "content": responses[i]})
    return messages


def _as_id_list(encoded: Any) -> list[int]:
    # transformers 5 returns a BatchEncoding from apply_chat_template(tokenize=True); 4.x a list.
    if hasattr(encoded, "keys") and "input_ids" in encoded:
        encoded = encoded["input_ids"]
    if hasattr(encoded, "tolist"):
        encoded = encoded.tolist()
    if encoded and isinstance(encoded[0], list):
        encoded = encoded[0]
    return [int(t) for t in encoded]


def render_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[list[int], str]:
    """Render ``messages`` for generation: ``(token ids, rendered text)``.

    With a chat template, the ids come from ``apply_chat_template(tokenize=True)``; the
    text is rendered separately only to decide the choice's leading space. Without a
    template, :data:`FALLBACK_TEMPLATE` is used (user turns only) and BOS is prepended
    when the tokenizer defines one.
    """
    if getattr(tokenizer, "chat_template", None):
        ids = _as_id_list(
            tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        )
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return ids, text
    text = "".join(
        FALLBACK_TEMPLATE.format(content=m["content"]) if m["role"] == "user" else m["content"] + "\n\n"
        for m in messages
        if m["role"] != "system"
    )
    ids = _as_id_list(tokenizer(text, add_special_tokens=False)["input_ids"])
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is not None and (not ids or ids[0] != bos):
        ids = [bos, *ids]
    return ids, text


def choice_token_ids(tokenizer: Any, rendered_text: str, choice: str) -> list[int]:
    """Token ids of ``choice`` as appended to a prompt whose rendered text is ``rendered_text``."""
    needs_space = bool(rendered_text) and not rendered_text[-1].isspace()
    text = (" " + choice) if needs_space else choice
    return _as_id_list(tokenizer(text, add_special_tokens=False)["input_ids"])


def score_spans(
    tokenizer: Any, prompt: str, choices: Sequence[str], system_prompt: str | None = None
) -> tuple[list[int], list[list[int]]]:
    """Prompt ids and, per choice, the ids scored after them (the exact spans of a question)."""
    prompt_ids, text = render_prompt(tokenizer, build_messages([prompt], system_prompt=system_prompt))
    return prompt_ids, [choice_token_ids(tokenizer, text, c) for c in choices]


def conversation_messages(messages: Sequence[Message]) -> list[dict[str, str]]:
    """A given conversation (``(role, content)`` pairs) as chat messages, without a system prompt.

    A judge's chat template (Llama Guard) frames the conversation itself; ray-bench's system
    prompt is for the evaluated models and is never added here.
    """
    return [{"role": role, "content": content} for role, content in messages]


def request_score_spans(
    tokenizer: Any, request: ScoreRequest, system_prompt: str | None = None
) -> tuple[list[int], list[list[int]]]:
    """:func:`score_spans` of a question, or of a ``messages`` conversation when the request has one."""
    if not request.messages:
        return score_spans(tokenizer, request.prompt, request.choices, system_prompt)
    prompt_ids, text = render_prompt(tokenizer, conversation_messages(request.messages))
    return prompt_ids, [choice_token_ids(tokenizer, text, c) for c in request.choices]


def turn_messages(
    turns: Sequence[str],
    responses: Sequence[str],
    turn: int,
    system_prompt: str | None,
    messages: Sequence[Message] = (),
) -> list[dict[str, str]]:
    """The chat history answered at ``turn``: the given ``messages``, else the turns so far."""
    if messages:
        return conversation_messages(messages)
    return build_messages(turns[: turn + 1], responses, system_prompt)
