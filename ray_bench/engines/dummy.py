"""A deterministic engine without a model: for dry runs of the pipeline and runner tests.

Scores are pseudo-random but a pure function of (model path, seed, question, choice), so
two runs agree and two "models" (different paths) disagree on some questions. Options
(``EngineConfig.options``) inject faults the way real engines fail:

* ``fail_on``: question ids that come back with a per-question ``error``;
* ``crash_on`` + ``crash_marker``: the worker process is SIGKILLed on that question
  the first time, i.e. while ``crash_marker`` does not exist yet (like a segfault or OOM);
* ``delay_s``: sleep per request (to watch progress bars and scheduling).

Given a whole conversation (``GenerateRequest.messages``, a judge's input) it answers in Llama
Guard's format, so ``--engine dummy`` also dry-runs the judge stage.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ray_bench.config import EngineConfig, ModelSpec, build_config
from ray_bench.engines.base import (
    ChoiceScores,
    EngineInfo,
    GenerateRequest,
    Generation,
    ScoreRequest,
    register_engine,
)


class DummyOptions(BaseModel):
    """Options of the dummy engine (see module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fail_on: list[str] = Field(default_factory=list)
    crash_on: str | None = None
    crash_marker: str | None = None
    delay_s: float = Field(default=0.0, ge=0.0)


def check_options(options: dict) -> DummyOptions:
    """Validate ``EngineConfig.options`` of the dummy engine."""
    return build_config(DummyOptions, dict(options), "dummy engine options")


def _unit(*parts: str) -> float:
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class DummyEngine:
    """Hash-based stand-in for a model (see module docstring)."""

    def __init__(self, model: ModelSpec, config: EngineConfig) -> None:
        self.model = model
        self.config = config
        self.options = check_options(config.options)
        self._key = f"{model.path}|{config.seed}"

    def _maybe_fail(self, question_id: str) -> str | None:
        opts = self.options
        if opts.crash_on == question_id and opts.crash_marker and not Path(opts.crash_marker).exists():
            Path(opts.crash_marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)  # a hard crash (OOM killer, segfault): no exception, gone
        if question_id in opts.fail_on:
            return f"injected failure for question {question_id!r}"
        return None

    def score_choices(self, requests: Sequence[ScoreRequest]) -> list[ChoiceScores]:
        """Pseudo-random log-prob sums in [-20, 0) and token counts in 1..8 per choice."""
        out = []
        for req in requests:
            time.sleep(self.options.delay_s)
            error = self._maybe_fail(req.question_id)
            if error:
                out.append(ChoiceScores(req.question_id, error=error))
                continue
            sums = tuple(-20.0 * _unit(self._key, req.question_id, c) for c in req.choices)
            counts = tuple(1 + len(c.split()) % 8 for c in req.choices)
            out.append(ChoiceScores(req.question_id, sums, counts))
        return out

    def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """Echo-like responses, one per turn."""
        out = []
        for req in requests:
            time.sleep(self.options.delay_s)
            error = self._maybe_fail(req.question_id)
            if error:
                out.append(Generation(req.question_id, error=error))
                continue
            if req.messages:
                # A judge's input: answer in Llama Guard's format, unsafe for a fifth of the answers.
                unsafe = _unit(self._key, req.question_id, req.messages[-1][1]) < 0.2
                responses: tuple[str, ...] = ("unsafe\nS10" if unsafe else "safe",)
            else:
                responses = tuple(
                    f"[{self.model.name}] reply {int(1000 * _unit(self._key, req.question_id, t))}"
                    for t in req.turns
                )
            out.append(Generation(req.question_id, responses, 3 * len(responses)))
        return out

    def info(self) -> EngineInfo:
        """Describe the dummy engine."""
        return EngineInfo(engine="dummy", model_path=self.model.path, dtype="none", device="cpu")

    def close(self) -> None:
        """Nothing to release."""


@register_engine("dummy")
def create_dummy_engine(model: ModelSpec, config: EngineConfig) -> DummyEngine:
    """Factory of the ``dummy`` engine."""
    return DummyEngine(model, config)
