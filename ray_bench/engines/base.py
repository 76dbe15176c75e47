"""The engine interface: the records engines take and return, and the engine registry.

An engine pins one model and offers two operations:

* :meth:`Engine.score_choices` - per-choice log-probability scores of closed questions;
* :meth:`Engine.generate` - generations for open prompts (single- or multi-turn).

Engines return these records, never vLLM or Hugging Face objects. New engines register
with :func:`register_engine` and are created by name with :func:`create_engine`; a
``"package.module:factory"`` path also works, so a plugin needs no change here.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ray_bench.errors import ConfigError
from ray_bench.registry import Registry

if TYPE_CHECKING:
    from ray_bench.config import EngineConfig, ModelSpec, ResourceConfig


#: One chat message: ``(role, content)``, role ``user`` or ``assistant``.
Message = tuple[str, str]


@dataclass(frozen=True)
class ScoreRequest:
    """One closed question to score.

    Attributes:
        question_id: Key of the question.
        prompt: The user message (rendered through the model's chat template).
        choices: Answer options; each is appended to the rendered prompt and scored.
        messages: A conversation rendered instead of ``prompt`` (with the model's own chat
            template, no system prompt), e.g. a judge's input; empty for a question.
    """

    question_id: str
    prompt: str
    choices: tuple[str, ...]
    messages: tuple[Message, ...] = ()


@dataclass(frozen=True)
class Decoding:
    """How one generation request is decoded (recorded in every result shard).

    Attributes:
        temperature: ``0`` is greedy decoding; above it, sampling.
        top_p: Nucleus mass kept when sampling.
        max_new_tokens: Most tokens generated per turn.
        seed: Seed of sampling.
        seed_per_question: ``True`` derives a seed per (seed, question, turn), independent of
            batching; ``False`` gives every request ``seed`` itself (what the reference did with
            vLLM's ``SamplingParams(seed=1)``).
    """

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0
    seed_per_question: bool = True

    def request_seed(self, question_id: str, turn: int) -> int:
        """The sampling seed of one (question, turn)."""
        if not self.seed_per_question:
            return self.seed
        import hashlib

        digest = hashlib.sha256(f"{self.seed}\x1f{question_id}\x1f{turn}".encode()).digest()
        return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclass(frozen=True)
class ChoiceScores:
    """Scores of one closed question.

    Attributes:
        question_id: Key of the question.
        logprob_sums: Per choice, the sum of the choice tokens' log-probabilities.
        num_tokens: Per choice, how many tokens were scored.
        error: ``None`` on success, else why the question failed (the other fields are empty).
    """

    question_id: str
    logprob_sums: tuple[float, ...] = ()
    num_tokens: tuple[int, ...] = ()
    error: str | None = None

    @property
    def probs(self) -> tuple[float, ...]:
        """Normalized geometric-mean choice probabilities (see :func:`choice_probabilities`)."""
        if self.error is not None or not self.logprob_sums:
            return ()
        return choice_probabilities(self.logprob_sums, self.num_tokens)

    @property
    def prediction(self) -> int | None:
        """Index of the most probable choice (first one on ties), ``None`` on error."""
        probs = self.probs
        if not probs:
            return None
        return max(range(len(probs)), key=probs.__getitem__)


@dataclass(frozen=True)
class GenerateRequest:
    """One open prompt. Multi-turn data gives several user turns, answered in order.

    Attributes:
        question_id: Key of the question.
        turns: The user turns; a single-turn prompt has exactly one.
        messages: A whole conversation to answer once instead of ``turns`` (a judge's input);
            it is rendered with the model's own chat template and no system prompt.
        decoding: How to decode; ``None`` means the engine config's settings.
    """

    question_id: str
    turns: tuple[str, ...] = ()
    messages: tuple[Message, ...] = ()
    decoding: Decoding | None = None

    @property
    def num_turns(self) -> int:
        """Responses to generate: one for a ``messages`` conversation, else one per turn."""
        return 1 if self.messages else len(self.turns)


@dataclass(frozen=True)
class Generation:
    """The engine's answer to a :class:`GenerateRequest`.

    Attributes:
        question_id: Key of the question.
        responses: One response per user turn.
        num_output_tokens: Generated tokens, summed over the turns.
        error: ``None`` on success, else why the question failed.
    """

    question_id: str
    responses: tuple[str, ...] = ()
    num_output_tokens: int = 0
    error: str | None = None

    @property
    def response(self) -> str | None:
        """The last turn's response (``None`` on error)."""
        return self.responses[-1] if self.responses else None


@dataclass(frozen=True)
class EngineInfo:
    """What an engine reports about itself for the run manifest."""

    engine: str
    model_path: str
    dtype: str
    device: str
    extra: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Engine(Protocol):
    """What every inference engine implements."""

    def score_choices(self, requests: Sequence[ScoreRequest]) -> list[ChoiceScores]:
        """Score every choice of every request; one :class:`ChoiceScores` per request, in order.

        A failure confined to one question must come back as that question's ``error``,
        not as an exception.
        """
        ...

    def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """Generate for every request; one :class:`Generation` per request, in order."""
        ...

    def info(self) -> EngineInfo:
        """Describe the loaded model and engine for provenance."""
        ...

    def close(self) -> None:
        """Release the model and any accelerator memory."""
        ...


EngineFactory = Callable[["ModelSpec", "EngineConfig"], Engine]

#: Engine factories by name; filled by :func:`register_engine`.
ENGINES: Registry[EngineFactory] = Registry("engine")

# Built-in engines live in modules imported on demand, so that `import ray_bench`
# never pulls torch or vLLM.
_BUILTIN_MODULES = {
    "hf": "ray_bench.engines.hf",
    "vllm": "ray_bench.engines.vllm",
    "dummy": "ray_bench.engines.dummy",
    "openai": "ray_bench.engines.openai",
}

#: Engines that call a served model over HTTP: the model "path" is the server's model name (no
#: checkpoint to check or hash), they answer open questions only (no choice log-probabilities)
#: and their actors reserve CPUs, never a GPU.
API_ENGINES = frozenset({"openai"})


# Light (no torch/vLLM) validators of `EngineConfig.options`, run on the driver so that a
# typo fails before any actor reserves a GPU.
_OPTION_CHECKERS = {
    "hf": "ray_bench.engines.batching:check_hf_options",
    "vllm": "ray_bench.engines.vllm_options:check_vllm_options",
    "dummy": "ray_bench.engines.dummy:check_options",
    "openai": "ray_bench.engines.openai_options:check_openai_options",
}


def check_engine_options(config: EngineConfig) -> None:
    """Validate the engine-specific options of a built-in engine without loading it.

    Raises:
        ConfigError: an unknown option or an invalid value.
    """
    target = _OPTION_CHECKERS.get(config.name)
    if target is not None:
        module_name, _, attr = target.partition(":")
        getattr(importlib.import_module(module_name), attr)(config.options)


#: Engine options that change speed or memory, not what is computed: a resume may change them
#: (e.g. a lower ``gpu_memory_utilization`` after an out-of-memory error). Every other option is
#: part of what made a result shard (``ray_bench.stages.answer``).
OPERATIONAL_OPTIONS: dict[str, frozenset[str]] = {
    "hf": frozenset({"share_prefixes", "min_shared_tokens", "max_row_tokens"}),
    "vllm": frozenset({"gpu_memory_utilization", "kv_cache_memory_bytes", "block_size", "max_num_seqs",
                       "max_num_batched_tokens"}),
    "dummy": frozenset({"delay_s", "crash_on", "crash_marker"}),
    # Limits, retries and which variable holds the key; base_url and the request fields are not.
    "openai": frozenset({"api_key_env", "max_concurrency", "timeout_s", "max_retries", "backoff_base_s",
                         "backoff_cap_s", "max_retry_after_s", "breaker_threshold", "breaker_cooldown_s"}),
}


def result_options(config: EngineConfig) -> dict[str, Any]:
    """``config.options`` without the engine's :data:`OPERATIONAL_OPTIONS`."""
    skip = OPERATIONAL_OPTIONS.get(config.name, frozenset())
    return {k: v for k, v in config.options.items() if k not in skip}


# Driver-side checks that need the whole run (models, resources), same lazy form.
_RUN_CHECKERS = {"vllm": "ray_bench.engines.vllm_support:check_run",
                 "openai": "ray_bench.engines.openai_options:check_run"}


def check_engine_run(models: list[ModelSpec], config: EngineConfig, resources: ResourceConfig) -> None:
    """Run a built-in engine's driver-side checks of a whole run (no model is loaded).

    Raises:
        ConfigError: e.g. vLLM's tensor parallelism not matching the GPUs an actor reserves.
    """
    target = _RUN_CHECKERS.get(config.name)
    if target is not None:
        module_name, _, attr = target.partition(":")
        getattr(importlib.import_module(module_name), attr)(models, config, resources)


def register_engine(name: str) -> Callable[[EngineFactory], EngineFactory]:
    """Decorator registering an engine factory ``(ModelSpec, EngineConfig) -> Engine``."""
    return ENGINES.register(name)


def engine_names() -> list[str]:
    """Names usable as ``--engine`` (built-ins and registered plugins)."""
    return sorted(set(_BUILTIN_MODULES) | set(ENGINES.names()))


def resolve_engine_factory(name: str) -> EngineFactory:
    """Find the factory for ``name``: a registered name, a built-in, or ``module:attr``."""
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"cannot import engine factory {name!r}: {exc}",
                hint="Use 'package.module:factory' with an importable module.",
            ) from exc
    if name not in ENGINES and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    if name not in ENGINES:
        from ray_bench.errors import UnknownNameError

        raise UnknownNameError("engine", name, engine_names())
    return ENGINES.get(name)


def create_engine(model: ModelSpec, config: EngineConfig) -> Engine:
    """Create the engine named by ``config.name`` for ``model``."""
    return resolve_engine_factory(config.name)(model, config)


def choice_probabilities(
    logprob_sums: Sequence[float], num_tokens: Sequence[int]
) -> tuple[float, ...]:
    """Normalize per-choice scores into a distribution over the choices.

    Each choice's score is its geometric-mean token probability
    ``p_i = exp(logprob_sum_i / num_tokens_i)``; the result is ``p_i / sum_j p_j``
    (the reference benchmark's definition, notes 2.5-2.6). Computed in log space
    (log-sum-exp) so that long, improbable choices do not underflow.

    Raises:
        ValueError: lengths differ, a token count is not positive, or a sum is NaN.
    """
    if len(logprob_sums) != len(num_tokens) or not logprob_sums:
        raise ValueError(
            f"need one token count per choice, got {len(logprob_sums)} sums and {len(num_tokens)} counts"
        )
    means = []
    for s, n in zip(logprob_sums, num_tokens):
        if n <= 0:
            raise ValueError(f"choice has {n} scored tokens; every choice needs at least one")
        if math.isnan(s):
            raise ValueError("choice log-probability sum is NaN")
        means.append(s / n)
    top = max(means)
    weights = [math.exp(m - top) for m in means]
    total = sum(weights)
    return tuple(w / total for w in weights)
