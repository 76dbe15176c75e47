"""Pure request building and result parsing for the vLLM engine (vLLM is not imported).

``SamplingParams`` keyword arguments, length validation, parsing of ``RequestOutput``-like
objects (duck-typed or plain dicts/lists), re-send detection and per-question isolation
of refused requests, all testable on CPU (options and checkpoint quantization detection
are in :mod:`ray_bench.engines.vllm_options`). Field names follow vLLM 0.33.0 (``sampling_params.py``, ``outputs.py``, ``logprobs.py``).

Scoring paths (``scoring_method`` option):

* ``token_ids`` - fixed-token prefill scoring: ``prompt_logprob_token_ids`` holds one
  row per choice token, ``prompt_logprob_start = len(prompt) - 1``; the result is
  ``RequestOutput.prompt_token_id_logprobs`` of shape ``[len(choice), 1]``. Prefix-cache
  reads stay on; a request whose scores were dropped (``None``) is re-sent with
  ``skip_reading_prefix_cache=True``.
* ``prompt_logprobs`` - ``prompt_logprobs=0`` with flat logprobs, prefix-cache reads
  allowed (``skip_reading_prefix_cache=False``); the actual token's logprob is the first
  entry at each position. vLLM's V1 runner fills only the positions it computes (from
  ``num_computed_tokens`` on; ``v1/worker/gpu_model_runner.py``
  ``_get_prompt_logprobs_dict``) and leaves the cached ones uninitialised, so only the
  choice positions are read, and only when ``RequestOutput.num_cached_tokens`` is below
  the prompt length (the logits of the last prompt token were computed); otherwise the
  request is re-sent with cache reads off.
* ``prompt_logprobs_uncached`` - the same without cache reads: every choice recomputes its
  whole prompt (vLLM's default for prompt-logprob requests).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ray_bench.engines.base import ChoiceScores
from ray_bench.engines.vllm_options import ScoringMethod
from ray_bench.errors import ConfigError, OutputParseError, RequestValidationError

# vLLM warns and raises temperatures in (0, 0.01) to 0.01, and rejects > 2
# (sampling_params.py __post_init__/_verify_args): refuse both up front instead.
_MIN_SAMPLING_TEMPERATURE = 1e-2
_MAX_TEMPERATURE = 2.0

T = TypeVar("T")
O = TypeVar("O")


@dataclass(frozen=True)
class ChoiceRequest:
    """One vLLM request: question ``question``'s prompt ids, then choice ``choice``'s ids."""

    question: int
    choice: int
    prompt_ids: tuple[int, ...]
    choice_ids: tuple[int, ...]

    @property
    def token_ids(self) -> list[int]:
        """The full prompt sent to vLLM (no BOS is added by vLLM to token prompts)."""
        return [*self.prompt_ids, *self.choice_ids]

    def prompt(self) -> dict[str, list[int]]:
        """The request's prompt as a ``TokensPrompt``-shaped dict."""
        return {"prompt_token_ids": self.token_ids}


def check_question(
    prompt_ids: Sequence[int],
    choice_ids: Sequence[Sequence[int]],
    max_model_len: int,
    vocab_size: int | None = None,
) -> None:
    """Reject a question vLLM would refuse, which would abort the whole batch.

    Raises:
        RequestValidationError: prompt + choice leave no room for the one output token
            vLLM requires (``_validate_prompt_len``), an empty span, or an id outside the vocabulary.
    """
    if not prompt_ids:
        raise RequestValidationError("the rendered prompt has no tokens")
    if not choice_ids:
        raise RequestValidationError("the question has no choices")
    for i, ids in enumerate(choice_ids):
        if not ids:
            raise RequestValidationError(f"choice {i} tokenizes to no tokens")
        total = len(prompt_ids) + len(ids)
        if total >= max_model_len:
            raise RequestValidationError(
                f"prompt ({len(prompt_ids)} tokens) + choice {i} ({len(ids)} tokens) = {total} "
                f"tokens does not fit max_model_len={max_model_len} (needs at most {max_model_len - 1})"
            )
    if vocab_size is not None:
        bad = sorted({t for t in (*prompt_ids, *(t for c in choice_ids for t in c)) if not 0 <= t < vocab_size})
        if bad:
            raise RequestValidationError(f"token ids {bad[:5]} are outside the model vocabulary (size {vocab_size})")


def build_question_requests(
    question: int, prompt_ids: Sequence[int], choice_ids: Sequence[Sequence[int]]
) -> list[ChoiceRequest]:
    """The k requests of one question, adjacent so that they share the prefix cache."""
    prompt = tuple(int(t) for t in prompt_ids)
    return [
        ChoiceRequest(question, i, prompt, tuple(int(t) for t in ids)) for i, ids in enumerate(choice_ids)
    ]


def scoring_params(
    request: ChoiceRequest, method: ScoringMethod, *, skip_reading_prefix_cache: bool = False
) -> dict[str, Any]:
    """``SamplingParams`` keyword arguments that score ``request``'s choice tokens.

    Args:
        skip_reading_prefix_cache: For re-sending (``prompt_logprobs_uncached`` always
            skips cache reads).
    """
    common: dict[str, Any] = {"max_tokens": 1, "temperature": 0.0, "detokenize": False}
    if method == "token_ids":
        return {
            **common,
            # Row i predicts prompt token start + i + 1, i.e. choice token i.
            "prompt_logprob_token_ids": [[t] for t in request.choice_ids],
            "prompt_logprob_start": len(request.prompt_ids) - 1,
            "skip_reading_prefix_cache": skip_reading_prefix_cache,
        }
    if method in ("prompt_logprobs", "prompt_logprobs_uncached"):
        skip = skip_reading_prefix_cache or method == "prompt_logprobs_uncached"
        return {**common, "prompt_logprobs": 0, "flat_logprobs": True, "skip_reading_prefix_cache": skip}
    raise ValueError(f"unknown scoring method {method!r}")



@dataclass(frozen=True)
class ChoiceResult:
    """Score of one choice: the summed log-probability and the number of tokens."""

    logprob_sum: float
    num_tokens: int


def _field(output: Any, name: str) -> Any:
    if isinstance(output, Mapping):
        return output.get(name)
    return getattr(output, name, None)


def _logprob_value(entry: Any) -> float:
    # A Logprob object, a dict mirroring it, or a bare float.
    if isinstance(entry, Mapping):
        return float(entry["logprob"])
    return float(getattr(entry, "logprob", entry))


def _parse_token_id_scores(scores: Any, request: ChoiceRequest) -> ChoiceResult:
    rows = scores.tolist() if hasattr(scores, "tolist") else list(scores)
    if len(rows) != len(request.choice_ids):
        raise OutputParseError(
            f"prompt_token_id_logprobs has {len(rows)} rows, expected {len(request.choice_ids)} (one per choice token)"
        )
    values = [float(row[0] if isinstance(row, (list, tuple)) else row) for row in rows]
    return ChoiceResult(sum(values), len(values))


def _actual_token_logprobs(prompt_logprobs: Any, request: ChoiceRequest) -> list[float]:
    start, ids = len(request.prompt_ids), request.token_ids
    flat = _is_flat(prompt_logprobs)
    values = []
    for pos in range(start, len(ids)):
        if flat:
            j = _field(prompt_logprobs, "start_indices")[pos]
            token, value = _field(prompt_logprobs, "token_ids")[j], _field(prompt_logprobs, "logprobs")[j]
        else:
            entry = prompt_logprobs[pos]
            if not entry or ids[pos] not in entry:
                raise OutputParseError(f"prompt_logprobs position {pos} lacks the prompt token {ids[pos]}")
            token, value = ids[pos], _logprob_value(entry[ids[pos]])
        if token != ids[pos]:
            raise OutputParseError(f"prompt_logprobs position {pos} holds token {token}, the prompt has {ids[pos]}")
        values.append(float(value))
    return values


def _scores_field(output: Any, method: ScoringMethod) -> Any:
    return _field(output, "prompt_token_id_logprobs" if method == "token_ids" else "prompt_logprobs")


def needs_resend(output: Any, request: ChoiceRequest, method: ScoringMethod) -> bool:
    """Whether ``output`` came back empty and should be re-sent without cache reads.

    vLLM drops token-id scores (``None``) when a prefix-cache hit covered the first
    scored row; prompt logprobs of positions read from the cache are not computed, so a
    hit that reaches the last prompt token (``num_cached_tokens >= len(prompt)``) or a
    short list means re-sending.
    """
    scores = _scores_field(output, method)
    if scores is None:
        return True
    if method != "token_ids":
        cached = _field(output, "num_cached_tokens")
        # Token P (the first choice token) is predicted by the logits of position P - 1.
        if cached is not None and int(cached) >= len(request.prompt_ids):
            return True
        return _num_positions(scores) < len(request.token_ids)
    return False


def _num_positions(prompt_logprobs: Any) -> int:
    starts = _field(prompt_logprobs, "start_indices") if _is_flat(prompt_logprobs) else None
    return len(starts) if starts is not None else len(prompt_logprobs)


def _is_flat(prompt_logprobs: Any) -> bool:
    # FlatLogprobs (or a dict mirroring it) rather than a list of per-position dicts.
    if isinstance(prompt_logprobs, Mapping):
        return "start_indices" in prompt_logprobs
    return hasattr(prompt_logprobs, "start_indices")


def parse_choice_output(output: Any, request: ChoiceRequest, method: ScoringMethod) -> ChoiceResult | None:
    """Logprob sum and token count of one choice, ``None`` if empty (:func:`needs_resend`).

    Raises:
        OutputParseError: wrong row count, misaligned positions or a non-finite sum.
    """
    if needs_resend(output, request, method):
        return None
    returned = _field(output, "prompt_token_ids")
    if returned is not None and list(returned) != request.token_ids:
        raise OutputParseError("the output's prompt_token_ids differ from the request's")
    scores = _scores_field(output, method)
    if method == "token_ids":
        result = _parse_token_id_scores(scores, request)
    else:
        values = _actual_token_logprobs(scores, request)
        result = ChoiceResult(sum(values), len(values))
    if not math.isfinite(result.logprob_sum):
        raise OutputParseError(f"choice {request.choice} has a non-finite logprob sum {result.logprob_sum}")
    return result


def assemble_scores(
    question_id: str, num_choices: int, results: Mapping[int, ChoiceResult], error: str | None = None
) -> ChoiceScores:
    """One :class:`ChoiceScores`; an error, or any missing choice, makes it an error record."""
    if error is None:
        missing = [i for i in range(num_choices) if i not in results]
        if missing:
            error = f"choices {missing} got no scores from vLLM (empty even after re-sending)"
    if error is not None:
        return ChoiceScores(question_id=question_id, error=error)
    ordered = [results[i] for i in range(num_choices)]
    return ChoiceScores(
        question_id=question_id,
        logprob_sums=tuple(r.logprob_sum for r in ordered),
        num_tokens=tuple(r.num_tokens for r in ordered),
    )



def generation_params(
    max_new_tokens: int, temperature: float, top_p: float, seed: int
) -> dict[str, Any]:
    """``SamplingParams`` keyword arguments: greedy at 0, else seeded sampling.

    Every field a ``generation_config`` could set is explicit; the engine detokenizes.

    Raises:
        ConfigError: a temperature vLLM would silently raise (0 < T < 0.01) or reject (> 2).
    """
    if 0.0 < temperature < _MIN_SAMPLING_TEMPERATURE or temperature > _MAX_TEMPERATURE:
        raise ConfigError(
            f"temperature {temperature} is outside what vLLM accepts unchanged",
            hint=f"Use 0 (greedy) or a value in [{_MIN_SAMPLING_TEMPERATURE}, {_MAX_TEMPERATURE}].",
        )
    greedy = temperature == 0.0
    return {
        "n": 1,
        "max_tokens": max_new_tokens,
        "temperature": temperature,
        "top_p": 1.0 if greedy else top_p,
        "top_k": 0,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "seed": None if greedy else seed,
        "detokenize": False,
    }


def check_generation_prompt(prompt_len: int, max_new_tokens: int, max_model_len: int) -> None:
    """Reject a prompt whose generation ``max_model_len`` would cut short.

    Raises:
        RequestValidationError: with the lengths.
    """
    if prompt_len < 1:
        raise RequestValidationError("the rendered prompt has no tokens")
    if prompt_len + max_new_tokens > max_model_len:
        raise RequestValidationError(
            f"prompt ({prompt_len} tokens) + max_new_tokens ({max_new_tokens}) exceeds max_model_len={max_model_len}"
        )


def generated_token_ids(output: Any) -> list[int]:
    """The completion's ids without the stop token (as the HF engine counts them).

    vLLM keeps the EOS/stop token last in ``token_ids`` on ``finish_reason="stop"``
    (``v1/engine/detokenizer.py``); stop strings are never requested.

    Raises:
        OutputParseError: no completion came back.
    """
    completions = _field(output, "outputs")
    if not completions:
        raise OutputParseError("the output has no completion")
    ids = [int(t) for t in _field(completions[0], "token_ids")]
    if ids and _field(completions[0], "finish_reason") == "stop":
        ids.pop()
    return ids


def submit_isolated(
    groups: Sequence[Sequence[T]],
    submit: Callable[[list[T]], list[O]],
    recoverable: tuple[type[BaseException], ...],
) -> list[list[O] | BaseException]:
    """Submit all groups in one call; if vLLM refuses it, bisect down to the culprits.

    vLLM aborts a whole ``generate`` call for one invalid request, so a refusal (an
    exception in ``recoverable``) is narrowed down by halving the groups (questions)
    until each refused group stands alone; other exceptions (a dead engine) propagate.

    Returns:
        Per group, its outputs in order, or the exception that group raised.
    """
    flat = [item for group in groups for item in group]
    try:
        outputs = submit(flat) if flat else []
        if len(outputs) != len(flat):
            raise OutputParseError(f"vLLM returned {len(outputs)} outputs for {len(flat)} requests")
    except recoverable as exc:
        if len(groups) <= 1:
            return [exc] * len(groups)
        mid = len(groups) // 2
        return [*submit_isolated(groups[:mid], submit, recoverable), *submit_isolated(groups[mid:], submit, recoverable)]
    result: list[list[O] | BaseException] = []
    for group in groups:
        result.append(outputs[: len(group)])
        outputs = outputs[len(group) :]
    return result
