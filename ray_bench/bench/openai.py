"""Requests per second of the ``openai`` engine against a server, at several concurrency levels.

:func:`run_openai_benchmark` creates one :class:`~ray_bench.engines.openai.OpenAIEngine` per
concurrency level (``max_concurrency`` = the level; connection pools are opened before any
timing) and sends each the same ``requests`` single-turn prompts through ``generate``, the path
``ray-bench run`` uses. Rounds are interleaved: every round runs every level, the order rotated
by one per round (1, 8, 32 / 8, 32, 1 / 32, 1, 8 ...), so drift and warm-up hit all levels.
Per level the best round is reported (pitfalls.md: best-of on shared machines), plus the median;
ratios are against the first level. One warm-up call per level is not timed.

The server is any OpenAI-compatible base URL (e.g. a local ``vllm serve``) or, by default, the
built-in stub (:mod:`ray_bench.bench.openai_stub`, in its own process so that it does not share
the client's GIL) with a fixed latency per request, where the ideal rate is ``concurrency / latency``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

#: The issue's concurrency levels.
DEFAULT_LEVELS = (1, 8, 32)


@dataclass(frozen=True)
class OpenAIBenchOptions:
    """What :func:`run_openai_benchmark` measures.

    Attributes:
        base_url: The server; ``None`` starts the stub.
        model: The served model's name.
        api_key_env: Variable holding the key (``None``: no authentication).
        requests: Requests per measurement (per level per round).
        levels: Concurrency levels.
        rounds: Interleaved rounds.
        max_new_tokens: Token limit per request (greedy decoding).
        stub_latency_s: The stub's latency per request.
        prompt: The user message (each request adds its number, so prompts differ).
    """

    base_url: str | None = None
    model: str = "stub"
    api_key_env: str | None = None
    requests: int = 64
    levels: tuple[int, ...] = DEFAULT_LEVELS
    rounds: int = 3
    max_new_tokens: int = 16
    stub_latency_s: float = 0.05
    prompt: str = "Score this candidate on a scale of 0-100. Respond with the score in this format: Score: X/100."

    def __post_init__(self) -> None:
        if self.requests < 1 or self.rounds < 1 or not self.levels or min(self.levels) < 1:
            raise ValueError(f"invalid openai benchmark options: {self}")
        if self.stub_latency_s < 0 or self.max_new_tokens < 1:
            raise ValueError(f"invalid openai benchmark options: {self}")


@dataclass
class LevelResult:
    """One concurrency level over all rounds."""

    concurrency: int
    seconds: list[float] = field(default_factory=list)
    errors: int = 0
    retries: int = 0

    def rates(self, requests: int) -> list[float]:
        """Requests per second of each round."""
        return [requests / s for s in self.seconds]


@dataclass
class OpenAIBenchResult:
    """The measurements and the setup."""

    options: OpenAIBenchOptions
    server: str
    levels: list[LevelResult]

    def best_rate(self, level: LevelResult) -> float:
        """The best round's requests/s."""
        return max(level.rates(self.options.requests))

    def median_rate(self, level: LevelResult) -> float:
        """The median round's requests/s."""
        return statistics.median(level.rates(self.options.requests))

    def ratio(self, level: LevelResult) -> float:
        """Best requests/s over the first level's best."""
        return self.best_rate(level) / self.best_rate(self.levels[0])

    @property
    def all_ok(self) -> bool:
        """No request failed."""
        return all(level.errors == 0 for level in self.levels)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready result."""
        return {"setup": {**asdict(self.options), "server": self.server},
                "levels": [{"concurrency": lv.concurrency, "seconds": lv.seconds, "errors": lv.errors,
                            "retries": lv.retries, "best_rps": self.best_rate(lv), "median_rps": self.median_rate(lv),
                            "ratio_to_first": self.ratio(lv)} for lv in self.levels]}


def _requests(options: OpenAIBenchOptions, round_: int) -> list[Any]:
    from ray_bench.engines.base import GenerateRequest

    return [GenerateRequest(f"bench-{round_}-{i}", (f"{options.prompt} ({i})",)) for i in range(options.requests)]


def _engine(options: OpenAIBenchOptions, base_url: str, level: int) -> Any:
    from ray_bench.config import EngineConfig, ModelSpec
    from ray_bench.engines.openai import create_openai_engine

    config = EngineConfig(name="openai", max_new_tokens=options.max_new_tokens, options={
        "base_url": base_url, "api_key_env": options.api_key_env, "max_concurrency": level})
    return create_openai_engine(ModelSpec(name="bench", path=options.model), config)


def run_openai_benchmark(options: OpenAIBenchOptions, log: Callable[[str], None] = lambda _: None) -> OpenAIBenchResult:
    """Measure requests/s per concurrency level (module docstring)."""
    from contextlib import nullcontext

    from ray_bench.bench.openai_stub import StubProcess

    stub = StubProcess(options.stub_latency_s) if options.base_url is None else None
    with stub if stub is not None else nullcontext(options.base_url) as base_url:
        server = f"stub ({options.stub_latency_s * 1000:g} ms per request)" if stub else str(base_url)
        engines = {level: _engine(options, base_url, level) for level in options.levels}
        try:
            results = {level: LevelResult(level) for level in options.levels}
            for level, engine in engines.items():
                engine.generate(_requests(options, -1)[:level])  # warm-up: pool and server caches
            for round_ in range(options.rounds):
                shift = round_ % len(options.levels)
                for level in options.levels[shift:] + options.levels[:shift]:
                    _measure(engines[level], results[level], _requests(options, round_))
                    log(f"round {round_ + 1}/{options.rounds}, concurrency {level}: "
                        f"{options.requests / results[level].seconds[-1]:.1f} requests/s")
        finally:
            for engine in engines.values():
                engine.close()
    return OpenAIBenchResult(options, server, [results[level] for level in options.levels])


def _measure(engine: Any, result: LevelResult, requests: list[Any]) -> None:
    retries = engine.stats.retries
    started = time.perf_counter()
    out = engine.generate(requests)
    result.seconds.append(time.perf_counter() - started)
    result.errors += sum(g.error is not None for g in out)
    result.retries += engine.stats.retries - retries
