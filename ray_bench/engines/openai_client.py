"""The HTTP side of the ``openai`` engine: one chat-completion request with retries (aiohttp, asyncio).

aiohttp rather than httpx: on the 2-core development machine httpx 0.28 served 580 requests/s at
concurrency 1 and fell to 240 at 32 against a local stub, aiohttp 1,800 and 3,600 (its
connection pool does not slow down with many connections).

What is retried, and how (the usual policy of OpenAI's own clients):

* **retried**: HTTP 408, 409, 429 and 5xx, timeouts and dropped connections, up to
  ``max_retries`` times. The wait is the server's ``Retry-After`` (or OpenAI's
  ``retry-after-ms``) when it sends one, up to ``max_retry_after_s``; else exponential backoff
  ``min(cap, base * 2**retry)`` with "equal jitter" (half of it fixed, half uniform random),
  so many clients that failed together do not retry together. A request waiting to retry
  holds no concurrency slot.
* **fatal** (the whole call stops): 401, 403 and 404 - a wrong key, a forbidden model or a
  model the server does not serve fail every request the same way.
* **the request's own failure** (not retried): any other 4xx (e.g. a prompt longer than the
  context), and a 2xx reply that is not JSON.

Every message that leaves this module has the API key scrubbed out (:func:`scrub`): servers
sometimes echo a (partly masked) key in their errors.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Literal

from ray_bench.engines.openai_options import OpenAIOptions, error_text, scrub

logger = logging.getLogger("ray_bench.engines.openai")

#: Statuses retried with backoff.
RETRY_STATUSES = frozenset({408, 409, 429})
#: Statuses that stop the whole call: the configuration, not the question, is wrong.
FATAL_STATUSES = frozenset({401, 403, 404})

FailureKind = Literal["fatal", "transient", "request", "parse"]


class RequestFailure(Exception):
    """One request failed for good (retries spent, or not retryable).

    Attributes:
        kind: ``fatal`` (stop the call), ``transient`` (retries exhausted), ``request`` (a 4xx
            about this request) or ``parse`` (a 2xx reply that is not JSON).
        status: The last HTTP status, ``None`` for timeouts and connection errors.
        attempts: How many attempts were made.
    """

    def __init__(self, kind: FailureKind, message: str, status: int | None, attempts: int) -> None:
        super().__init__(message)
        self.kind, self.status, self.attempts = kind, status, attempts


@dataclass(frozen=True)
class _Retry:
    """Why an attempt is retried: its status (``None``: timeout or connection), message and the
    server's requested wait (``None``: back off)."""

    status: int | None
    message: str
    wait: float | None = None


@dataclass
class ClientStats:
    """Counters since the client was created (for the benchmark and the tests)."""

    requests: int = 0
    attempts: int = 0
    retries: int = 0
    failed: int = 0
    waits: list[float] = field(default_factory=list)


def retry_after_s(headers: Any) -> float | None:
    """The server's requested wait in seconds: ``retry-after-ms``, else ``Retry-After``
    (seconds or an HTTP date); ``None`` when absent or unreadable."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def backoff_s(retry: int, base: float, cap: float, rng: random.Random) -> float:
    """Delay before retry number ``retry`` (0-based): equal jitter on ``min(cap, base * 2**retry)``."""
    ceiling = min(cap, base * 2.0**retry)
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


#: Seconds an idle pooled connection is kept. Below uvicorn's 5 s keep-alive (vLLM's server and
#: most Python ones): reusing a connection the server is closing just then fails with "Server
#: disconnected" and costs a retry with backoff (seen against `vllm serve` when the engine sat
#: idle about 5 s between calls). A new connection to a local server takes about a millisecond.
KEEPALIVE_S = 4.0


class ChatClient:
    """Posts chat-completion bodies to one server with bounded concurrency and retries.

    Create and use it inside one event loop (``start`` there first).

    Args:
        options: The engine options (URL, limits, retry policy).
        api_key: Sent as ``Authorization: Bearer``; ``None`` sends no header.
        seed: Seeds the backoff jitter (reproducible waits in tests).
    """

    def __init__(self, options: OpenAIOptions, api_key: str | None, seed: int = 0) -> None:
        self.options = options
        self._key = api_key
        self._rng = random.Random(seed)
        self._http: Any = None
        self._slots: asyncio.Semaphore | None = None
        self.stats = ClientStats()

    async def start(self) -> None:
        """Open the connection pool (sized to ``max_concurrency``); proxies come from the environment."""
        import aiohttp

        from ray_bench import __version__

        headers = {"User-Agent": f"ray-bench/{__version__}"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        n = self.options.max_concurrency
        self._http = aiohttp.ClientSession(
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self.options.timeout_s),
            connector=aiohttp.TCPConnector(limit=n, keepalive_timeout=KEEPALIVE_S),
            trust_env=True,
        )
        self._slots = asyncio.Semaphore(n)

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _scrub(self, text: str) -> str:
        return scrub(text, self._key)

    async def complete(self, body: dict[str, Any], label: str = "") -> Any:
        """POST ``body`` to ``<base_url>/chat/completions``; the reply's parsed JSON.

        Raises:
            RequestFailure: the request failed for good (see the module docstring).
        """
        options = self.options
        self.stats.requests += 1
        for attempt in range(options.max_retries + 1):
            self.stats.attempts += 1
            result = await self._attempt(body, attempt + 1)
            if not isinstance(result, _Retry):
                return result
            if attempt == options.max_retries:
                self.stats.failed += 1
                raise RequestFailure("transient", f"{result.message} ({attempt + 1} attempt(s))", result.status,
                                     attempt + 1)
            delay = (min(result.wait, options.max_retry_after_s) if result.wait is not None
                     else backoff_s(attempt, options.backoff_base_s, options.backoff_cap_s, self._rng))
            self.stats.retries += 1
            self.stats.waits.append(delay)
            logger.warning("retrying %s in %.2f s (attempt %d of %d failed: %s)", label or "a request", delay,
                           attempt + 1, options.max_retries + 1, result.message)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(self, body: dict[str, Any], attempt: int) -> Any:
        """One POST: the parsed reply, or a :class:`_Retry` saying why and how long to wait.

        Raises:
            RequestFailure: a fatal, request-specific or unparsable answer.
        """
        import aiohttp

        assert self._http is not None and self._slots is not None, "ChatClient.start() was not awaited"
        async with self._slots:
            try:
                async with self._http.post(self.options.chat_url, json=body) as response:
                    status, headers = response.status, response.headers
                    text = await response.text(errors="replace")
            except asyncio.TimeoutError:
                return _Retry(None, f"timed out after {self.options.timeout_s:g} s")
            except aiohttp.ClientError as exc:
                return _Retry(None, self._scrub(f"connection failed ({type(exc).__name__}: {exc})"))
        if 200 <= status < 300:
            try:
                return json.loads(text)
            except ValueError:
                self.stats.failed += 1
                shown = self._scrub(text[:200])
                raise RequestFailure("parse", f"HTTP {status} reply is not JSON: {shown!r}", status, attempt) from None
        message = self._scrub(f"HTTP {status}: {self._error_message(text)}")
        if status in RETRY_STATUSES or status >= 500:
            return _Retry(status, message, retry_after_s(headers))
        self.stats.failed += 1
        raise RequestFailure("fatal" if status in FATAL_STATUSES else "request", message, status, attempt)

    @staticmethod
    def _error_message(text: str) -> str:
        try:
            return error_text(json.loads(text))
        except ValueError:
            return text[:300] or "(empty body)"
