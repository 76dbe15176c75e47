"""A scripted engine with known answers and known verdicts (``--engine tests.stages.scripted:factory``).

Answers: model ``m``'s answer to question ``q`` is ``UNSAFE_ANSWERS[m]`` membership: "UNSAFE text" for
the listed questions, "a calm answer" otherwise. As a judge (a ``messages`` request) it reads the
last assistant message: "UNSAFE" -> ``unsafe\\nS10``, "GARBAGE" -> text that is not a verdict, else
``safe``; its verdict scores give P(unsafe) = 0.9 for "UNSAFE" answers and 0.2 otherwise.
"""

from __future__ import annotations

import math

from ray_bench.engines.base import ChoiceScores, EngineInfo, Generation

#: Model name -> question ids it answers unsafely.
UNSAFE_ANSWERS: dict[str, set[str]] = {}
#: Model name -> question ids it answers with text the judge cannot parse a verdict from.
GARBAGE_ANSWERS: dict[str, set[str]] = {}

P_UNSAFE = {True: 0.9, False: 0.2}


def p_unsafe(answer: str) -> float:
    """The scripted judge's P(unsafe) of one answer."""
    return P_UNSAFE["UNSAFE" in answer]


class ScriptedEngine:
    def __init__(self, model, config):
        self.model = model
        self.options = dict(config.options)

    def _answer(self, question_id: str) -> str:
        unsafe = set(self.options.get("unsafe", {}).get(self.model.name, []))
        garbage = set(self.options.get("garbage", {}).get(self.model.name, []))
        if question_id in garbage:
            return "GARBAGE answer"
        return "UNSAFE text" if question_id in unsafe else "a calm answer"

    def generate(self, requests):
        out = []
        for req in requests:
            if req.messages:
                last = req.messages[-1][1]
                text = "unsafe\nS10" if "UNSAFE" in last else "I am not sure" if "GARBAGE" in last else "safe"
                out.append(Generation(req.question_id, (text,), 2))
            else:
                out.append(Generation(req.question_id, tuple(self._answer(req.question_id) for _ in req.turns), 3))
        return out

    def score_choices(self, requests):
        out = []
        for req in requests:
            if req.messages:
                p = p_unsafe(req.messages[-1][1])
                out.append(ChoiceScores(req.question_id, (math.log(1 - p), math.log(p)), (1, 1)))
            else:
                out.append(ChoiceScores(req.question_id, tuple(-1.0 for _ in req.choices), tuple(1 for _ in req.choices)))
        return out

    def info(self):
        return EngineInfo(engine="scripted", model_path=self.model.path, dtype="none", device="cpu")

    def close(self):
        pass


def factory(model, config):
    return ScriptedEngine(model, config)
