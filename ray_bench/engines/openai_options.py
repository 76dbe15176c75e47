"""Options and pure request/response helpers of the OpenAI-compatible engine (``--engine openai``).

Light on purpose (pydantic and the standard library only): the driver validates options and
refuses impossible runs with these before any actor starts, and the batch files
(:mod:`ray_bench.engines.openai_batch`) build their request bodies with the same
:func:`request_body` as the online engine, so a batch line and an online request for the same
question and decoding are the same JSON.

The API key is never an option: ``api_key_env`` names the environment variable that holds it,
and the engine reads its value when it is created (:func:`read_api_key`). Options, manifests,
logs and error texts therefore never contain the key; :func:`scrub` removes it from any text a
server might echo it in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ray_bench.config import build_config
from ray_bench.errors import ConfigError, EngineError, OutputParseError

if TYPE_CHECKING:
    from ray_bench.config import EngineConfig, ModelSpec, ResourceConfig
    from ray_bench.engines.base import Decoding

#: The OpenAI API; any OpenAI-compatible server (vLLM, TGI, llama.cpp, a proxy) works too.
DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: The chat endpoint below ``base_url`` (also the ``url`` of every batch request line).
CHAT_PATH = "/chat/completions"
#: OpenAI's temperature range is [0, 2].
MAX_TEMPERATURE = 2.0
#: Request-body keys the engine sets itself; ``extra_body`` may not override them.
RESERVED_BODY_KEYS = frozenset({"model", "messages", "temperature", "top_p", "max_tokens", "max_completion_tokens",
                                "seed", "stream", "n"})
#: What is replaced for the key in any text that leaves the engine.
REDACTED = "[redacted]"
#: Why an API engine refuses closed questions (the engine's and the driver's refusal).
SCORING_UNSUPPORTED = (
    "closed questions need the log-probability of each given answer choice, and chat-completion "
    "endpoints return log-probabilities only of the tokens the model generates"
)
SCORING_HINT = ("Run open datasets with --engine openai (e.g. --dataset Housing-v2 or BiasLens-GenWhy); score "
                "closed datasets with --engine hf or --engine vllm on the open weights.")


class OpenAIOptions(BaseModel):
    """Options of the ``openai`` engine, read from ``EngineConfig.options``.

    Attributes:
        base_url: The server's API root, e.g. ``http://127.0.0.1:8000/v1`` for ``vllm serve``;
            requests go to ``<base_url>/chat/completions``. Recorded in the manifest (never with
            credentials: a URL with ``user:password@`` is refused).
        api_key_env: Environment variable holding the key, sent as ``Authorization: Bearer``;
            ``None`` (or ``"none"``, what a command-line flag can say) for a server without
            authentication.
        max_concurrency: Requests in flight at once (per engine, i.e. per actor).
        timeout_s: Limit of one HTTP attempt (connect, write, read).
        max_retries: Retries of a request after a 408/409/429/5xx answer, a timeout or a
            dropped connection (so at most ``max_retries + 1`` attempts).
        backoff_base_s: First retry delay; doubles per retry ("equal jitter": half fixed,
            half random), up to ``backoff_cap_s``.
        backoff_cap_s: Longest computed retry delay.
        max_retry_after_s: Longest wait a server's ``Retry-After`` is honoured for.
        breaker_threshold: Requests in a row that exhaust their retries (no success between)
            after which the server counts as down: the call raises, so the shard fails and a
            rerun retries it instead of storing a shard of errors.
        breaker_cooldown_s: How long calls then fail at once before the server is tried again.
        max_tokens_field: ``max_tokens`` (vLLM, most servers) or ``max_completion_tokens``
            (OpenAI's newer models, which refuse ``max_tokens``).
        send_seed: Send each request's seed (OpenAI and vLLM accept it; some servers refuse it).
        extra_body: More request-body fields sent as they are (e.g. ``top_k`` for vLLM); may not
            set the fields above.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = DEFAULT_BASE_URL
    api_key_env: str | None = "OPENAI_API_KEY"
    max_concurrency: int = Field(default=8, ge=1, le=4096)
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=5, ge=0, le=100)
    backoff_base_s: float = Field(default=0.5, gt=0)
    backoff_cap_s: float = Field(default=30.0, gt=0)
    max_retry_after_s: float = Field(default=120.0, ge=0)
    breaker_threshold: int = Field(default=16, ge=1)
    breaker_cooldown_s: float = Field(default=30.0, ge=0)
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    send_seed: bool = True
    extra_body: dict[str, Any] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url {value!r} must be an http:// or https:// URL, e.g. http://127.0.0.1:8000/v1")
        if parts.username is not None or parts.password is not None:
            # The URL is recorded in the manifest: credentials in it would be written there.
            raise ValueError("base_url must not contain credentials (user:password@); put the key in api_key_env")
        if parts.query or parts.fragment:
            raise ValueError(f"base_url {value!r} must not have a query or fragment")
        return value.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _check_env_name(cls, value: str | None) -> str | None:
        if value is not None and value.strip().lower() in ("", "none"):
            return None  # `--engine-option api_key_env=none`: a flag cannot say null (flags' None means unset)
        if value is not None and (not value.replace("_", "a").isalnum() or value[0].isdigit()):
            raise ValueError(
                f"api_key_env {value!r} is not an environment variable name (letters, digits, '_'); "
                "it names the variable that holds the key, never the key itself"
            )
        return value

    @field_validator("extra_body")
    @classmethod
    def _check_extra_body(cls, value: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(set(value) & RESERVED_BODY_KEYS)
        if clash:
            raise ValueError(f"extra_body may not set {', '.join(clash)}: the engine sets them from the run's decoding")
        return value

    @model_validator(mode="after")
    def _backoff_order(self) -> OpenAIOptions:
        if self.backoff_cap_s < self.backoff_base_s:
            raise ValueError(f"backoff_cap_s ({self.backoff_cap_s}) is below backoff_base_s ({self.backoff_base_s})")
        return self

    @property
    def chat_url(self) -> str:
        """``<base_url>/chat/completions``."""
        return self.base_url + CHAT_PATH


def parse_openai_options(options: Mapping[str, Any]) -> OpenAIOptions:
    """Validate ``EngineConfig.options`` for the ``openai`` engine.

    Raises:
        ConfigError: an unknown key or an invalid value (all problems in one message).
    """
    return build_config(OpenAIOptions, dict(options), "openai engine options")


def check_openai_options(options: Mapping[str, Any]) -> None:
    """Driver-side check of the ``openai`` options."""
    parse_openai_options(options)


def check_decoding(decoding: Decoding) -> None:
    """Refuse a decoding the OpenAI API rejects (temperature above 2).

    Raises:
        ConfigError: naming the value.
    """
    if decoding.temperature > MAX_TEMPERATURE:
        raise ConfigError(
            f"temperature {decoding.temperature} is above {MAX_TEMPERATURE:g}, the OpenAI API's limit",
            hint="Use --temperature between 0 (greedy) and 2.",
        )


def check_run(models: list[ModelSpec], config: EngineConfig, resources: ResourceConfig) -> None:
    """Driver-side checks of a run with the ``openai`` engine (nothing is contacted).

    An API model has no local checkpoint and needs no accelerator: a GPU request or a hub
    revision is refused instead of ignored.

    Raises:
        ConfigError: ``resources.device`` is ``gpu``, a model has a ``revision``, or a decoding
            is outside the API's range.
    """
    parse_openai_options(config.options)
    if resources.device == "gpu":
        raise ConfigError(
            "the openai engine calls a server and runs on no GPU, but resources.device is 'gpu'",
            hint="Use --device auto or cpu with --engine openai: its actors then reserve CPUs only.",
        )
    for model in models:
        if model.revision is not None:
            raise ConfigError(
                f"model {model.name!r}: revision {model.revision!r} means nothing to a served model",
                hint="Put the served model's name in the path (e.g. --model gpt=gpt-4o-mini-2024-07-18).",
            )
    for decoding in config.decodings():
        check_decoding(decoding)


def read_api_key(options: OpenAIOptions) -> str | None:
    """The key from ``options.api_key_env`` (``None`` when no variable is configured).

    Raises:
        EngineError: the variable is configured but unset or empty (its name is in the message,
            never a value).
    """
    if options.api_key_env is None:
        return None
    key = os.environ.get(options.api_key_env, "")
    if not key.strip():
        raise EngineError(
            f"the environment variable {options.api_key_env} that should hold the API key is not set "
            "in this process",
            hint=f"export {options.api_key_env}=... where the engine runs (on every Ray node), or pass "
            "--engine-option api_key_env=none for a server without authentication.",
        )
    return key.strip()


def scrub(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` replaced by :data:`REDACTED`."""
    if not secret:
        return text
    return text.replace(secret, REDACTED)


def request_body(
    model: str,
    messages: Sequence[Mapping[str, str]],
    decoding: Decoding | None,
    seed: int | None,
    options: OpenAIOptions,
) -> dict[str, Any]:
    """The ``/v1/chat/completions`` body of one request.

    Args:
        model: The served model's name.
        messages: ``{"role", "content"}`` chat messages.
        decoding: Sent explicitly (``temperature``, ``top_p``, the token limit, ``seed``);
            ``None`` sends none of them, so the provider's defaults apply (what the housing
            reference's batch files did).
        seed: This request's seed (``Decoding.request_seed``); ignored without a decoding or
            with ``send_seed`` off.
        options: The engine options (token-limit field name, ``extra_body``).
    """
    body: dict[str, Any] = {"model": model, "messages": [dict(m) for m in messages]}
    if decoding is not None:
        body["temperature"] = decoding.temperature
        body["top_p"] = decoding.top_p
        body[options.max_tokens_field] = decoding.max_new_tokens
        if options.send_seed and seed is not None:
            body["seed"] = seed
    body.update(options.extra_body)
    return body


def parse_completion(body: Any) -> tuple[str, int]:
    """The reply text and completion tokens of a chat-completion response body.

    The text is ``choices[0].message.content``; a model's refusal (``message.refusal``, no
    content) is its text too, since refusing is an answer the bias analysis counts.

    Raises:
        OutputParseError: the body is not a chat completion (naming the first missing field).
    """
    if not isinstance(body, Mapping):
        raise OutputParseError(f"the reply is a JSON {type(body).__name__}, not a chat-completion object")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise OutputParseError("the reply has no 'choices' list with a first choice")
    message = choices[0].get("message")
    if not isinstance(message, Mapping):
        raise OutputParseError("the reply's choices[0] has no 'message' object")
    text = message.get("content")
    if not isinstance(text, str):
        text = message.get("refusal")
    if not isinstance(text, str):
        reason = choices[0].get("finish_reason")
        raise OutputParseError(f"the reply's choices[0].message has no text content (finish_reason {reason!r})")
    usage = body.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, Mapping) else None
    return text, int(tokens) if isinstance(tokens, int) and tokens >= 0 else 0


def error_text(body: Any, limit: int = 300) -> str:
    """The message of an OpenAI-style error body (``{"error": {"message": ...}}``), else the body."""
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
            return inner["message"][:limit]
        if isinstance(inner, str):
            return inner[:limit]
        if isinstance(body.get("message"), str):
            return body["message"][:limit]
    return str(body)[:limit]
