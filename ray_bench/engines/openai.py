"""The OpenAI-compatible engine (``--engine openai``): open questions through ``/v1/chat/completions``.

The model is a *served* model: ``ModelSpec.path`` is its name on the server (``gpt-4o-mini``,
or whatever ``vllm serve`` was given), not a checkpoint directory. Requests go to
``<base_url>/chat/completions`` (:mod:`ray_bench.engines.openai_client`: bounded concurrency,
retries with backoff, timeouts); every request sends its decoding explicitly (``temperature``,
``top_p``, the token limit and a per-(question, turn) ``seed``), built by the same
:func:`~ray_bench.engines.openai_options.request_body` as the batch files.

A multi-turn request is answered turn by turn, each reply fed back as the assistant's message
before the next user turn; a ``messages`` conversation goes as it is. One question's failure is
its ``error``; a fatal answer (401/403/404) or a server that fails ``breaker_threshold``
requests in a row raises instead, so the shard is not stored and a rerun retries it.

Closed questions cannot be answered: they need the log-probability of *given* continuations,
and chat endpoints only return log-probabilities of the tokens they generate.

The engine's synchronous methods (it lives in a Ray actor) run its coroutines on a private event
loop in a background thread, which keeps one connection pool for the engine's life.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ray_bench.engines.base import ChoiceScores, EngineInfo, GenerateRequest, Generation, ScoreRequest, register_engine
from ray_bench.engines.openai_client import ChatClient, RequestFailure
from ray_bench.engines.openai_options import (
    SCORING_HINT,
    SCORING_UNSUPPORTED,
    OpenAIOptions,
    check_decoding,
    parse_completion,
    parse_openai_options,
    read_api_key,
    request_body,
)
from ray_bench.engines.prompts import turn_messages
from ray_bench.errors import EngineError, OutputParseError

if TYPE_CHECKING:
    from ray_bench.config import EngineConfig, ModelSpec

T = TypeVar("T")

@register_engine("openai")
def create_openai_engine(model: ModelSpec, config: EngineConfig) -> OpenAIEngine:
    """Create an :class:`OpenAIEngine` (the ``"openai"`` engine factory); contacts nothing.

    Raises:
        ConfigError: invalid options or a decoding the API rejects.
        EngineError: ``api_key_env`` names an unset variable.
    """
    options = parse_openai_options(config.options)
    for decoding in config.decodings():
        check_decoding(decoding)
    return OpenAIEngine(model, config, options, read_api_key(options))


class _Breaker:
    """Counts requests in a row that spent their retries; at ``threshold`` the server is "down"
    and calls fail at once for ``cooldown_s`` (a circuit breaker)."""

    def __init__(self, threshold: int, cooldown_s: float) -> None:
        self.threshold, self.cooldown_s = threshold, cooldown_s
        self.in_a_row, self.open_until, self.last = 0, 0.0, ""

    def check(self, where: str) -> None:
        left = self.open_until - time.monotonic()
        if left > 0:
            raise EngineError(
                f"the server at {where} failed {self.threshold} requests in a row (last: {self.last}); "
                f"calls fail at once for {left:.0f} s more",
                hint="Check that the server is up and not rate-limiting; rerun the same command: shards that "
                "failed are retried.",
            )

    def success(self) -> None:
        self.in_a_row = 0

    def failure(self, message: str) -> bool:
        """Count one exhausted request; ``True`` when that opens the breaker."""
        self.in_a_row, self.last = self.in_a_row + 1, message
        if self.in_a_row < self.threshold:
            return False
        self.in_a_row, self.open_until = 0, time.monotonic() + self.cooldown_s
        return True


class OpenAIEngine:
    """An :class:`~ray_bench.engines.base.Engine` over an OpenAI-compatible chat endpoint.

    Args:
        model: ``path`` is the served model's name.
        config: The engine config (decoding, system prompt, options).
        options: Its validated options.
        api_key: The key (read from ``options.api_key_env``), or ``None``; kept only in the
            client's ``Authorization`` header, never in :meth:`info` or an error.
    """

    def __init__(self, model: ModelSpec, config: EngineConfig, options: OpenAIOptions, api_key: str | None) -> None:
        self._model, self._config, self._options = model, config, options
        self._client = ChatClient(options, api_key, seed=config.seed)
        self._breaker = _Breaker(options.breaker_threshold, options.breaker_cooldown_s)
        self._loop: asyncio.AbstractEventLoop | None = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ray-bench-openai", daemon=True)
        self._thread.start()
        self._run(self._client.start())
        self._info = EngineInfo(
            engine="openai",
            model_path=model.path,
            dtype="none",
            device="remote",
            extra={
                "base_url": options.base_url,
                "api_key_env": options.api_key_env or "none",
                "max_tokens_field": options.max_tokens_field,
                "send_seed": str(options.send_seed).lower(),
                "max_concurrency": str(options.max_concurrency),
            },
        )

    @property
    def stats(self) -> Any:
        """The HTTP client's counters (requests, attempts, retries, failed, waits)."""
        return self._client.stats

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coro.close()
            raise EngineError("the openai engine was closed", hint="Create a new engine.")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    # ------------------------------------------------------------------ the Engine protocol

    def score_choices(self, requests: Sequence[ScoreRequest]) -> list[ChoiceScores]:
        """Refuse: an API engine cannot score given choices (see :data:`SCORING_UNSUPPORTED`).

        Raises:
            EngineError: always.
        """
        raise EngineError(f"the openai engine cannot score closed questions: {SCORING_UNSUPPORTED}", hint=SCORING_HINT)

    def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """Answer every request (up to ``max_concurrency`` HTTP requests at once), in order.

        Raises:
            EngineError: a fatal answer (401/403/404), or the server failed too many requests
                in a row (then later calls fail at once for ``breaker_cooldown_s``).
        """
        self._breaker.check(self._options.base_url)
        return self._run(self._generate_all(list(requests)))

    def info(self) -> EngineInfo:
        """Engine, served model name and base URL (never the key)."""
        return self._info

    def close(self) -> None:
        """Close the connection pool and stop the event loop."""
        if self._loop is None:
            return
        try:
            self._run(self._client.aclose())
        finally:
            loop, self._loop = self._loop, None
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=10)
            loop.close()

    # ------------------------------------------------------------------ coroutines

    async def _generate_all(self, requests: list[GenerateRequest]) -> list[Generation]:
        tasks = [asyncio.ensure_future(self._conversation(r)) for r in requests]
        try:
            return list(await asyncio.gather(*tasks))
        except EngineError:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _conversation(self, req: GenerateRequest) -> Generation:
        """One question: its turns in order, each reply fed back before the next turn."""
        if not req.num_turns:
            return Generation(req.question_id, error="the request has no turns")
        decoding = req.decoding or self._config.decoding()
        responses: list[str] = []
        tokens = 0
        for turn in range(req.num_turns):
            messages = turn_messages(req.turns, responses, turn, self._config.system_prompt, req.messages)
            body = request_body(self._model.path, messages, decoding, decoding.request_seed(req.question_id, turn),
                                self._options)
            try:
                text, used = parse_completion(await self._client.complete(body, f"{req.question_id} turn {turn}"))
            except RequestFailure as exc:
                self._raise_if_fatal(exc)
                return Generation(req.question_id, error=f"turn {turn}: {exc}")
            except OutputParseError as exc:
                return Generation(req.question_id, error=f"turn {turn}: the server's reply is not a chat completion: {exc}")
            self._breaker.success()
            responses.append(text)
            tokens += used
        return Generation(req.question_id, tuple(responses), tokens)

    def _raise_if_fatal(self, exc: RequestFailure) -> None:
        """Raise for failures that are not the question's: a fatal status, or the breaker opening."""
        url = self._options.chat_url
        if exc.kind == "fatal":
            raise EngineError(
                f"{url} refused the request for model {self._model.path!r}: {exc}",
                hint="401/403: check the key in the variable api_key_env names; 404: check the served model's "
                "name (--model NAME=SERVED_NAME) and base_url.",
            )
        if exc.kind == "transient" and self._breaker.failure(str(exc)):
            self._breaker.check(self._options.base_url)
