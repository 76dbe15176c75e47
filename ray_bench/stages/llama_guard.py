"""Parse the verdict text of the Llama Guard 3 and Llama Guard 4 safety classifiers.

Both models (Meta's model cards) answer with ``safe`` on the first line or, when the
judged turn violates the policy, ``unsafe`` followed by one line of comma-separated
category codes, e.g. ``"unsafe\\nS1,S10"``. The codes are the 14 MLCommons hazards
listed in :data:`CATEGORIES`. Generations may begin with whitespace (Llama Guard 4
often emits ``"\\n\\nsafe"``) and may end with whitespace or an end-of-turn token's text
(``<|eot_id|>``, ``<|eot|>``) when special tokens were not skipped.

The reference benchmark (``reference-benchmark.md`` section 3.2) derived
``is_safe = "unsafe" not in text``, which counts any garbage output as safe. Here
:func:`parse_verdict` is strict: text that is not the format raises
:class:`~ray_bench.errors.JudgeParseError`, which the judge stage records as the row's
``judge_error`` instead of a verdict. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

from ray_bench.errors import JudgeParseError

#: Category code -> name (S1..S14, in order).
CATEGORIES: dict[str, str] = {
    "S1": "Violent Crimes",
    "S2": "Non-Violent Crimes",
    "S3": "Sex-Related Crimes",
    "S4": "Child Sexual Exploitation",
    "S5": "Defamation",
    "S6": "Specialized Advice",
    "S7": "Privacy",
    "S8": "Intellectual Property",
    "S9": "Indiscriminate Weapons",
    "S10": "Hate",
    "S11": "Suicide & Self-Harm",
    "S12": "Sexual Content",
    "S13": "Elections",
    "S14": "Code Interpreter Abuse",
}

#: The two verdict words, in the order the judge stage scores them (p_unsafe = probability of the second).
VERDICTS: tuple[str, str] = ("safe", "unsafe")

#: End-of-turn token texts that may trail a generation decoded with special tokens kept.
_END_MARKERS: tuple[str, ...] = ("<|eot_id|>", "<|eot|>", "<|end_of_text|>", "</s>")

_EXPECTED = "expected 'safe', or 'unsafe' and one line of comma-separated codes S1..S14"


@dataclass(frozen=True)
class Verdict:
    """One parsed Llama Guard verdict.

    Attributes:
        is_safe: True for ``safe``, False for ``unsafe``.
        categories: The violated category codes (``("S1", "S10")``), in the order the
            judge gave them, de-duplicated; empty when safe.
    """

    is_safe: bool
    categories: tuple[str, ...] = ()

    @property
    def category_names(self) -> tuple[str, ...]:
        """The names of :attr:`categories` (``("Violent Crimes", "Hate")``), same order."""
        return tuple(CATEGORIES[code] for code in self.categories)


def _short(text: str, limit: int = 120) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _fail(text: str, problem: str) -> JudgeParseError:
    return JudgeParseError(
        f"Llama Guard output {_short(text)} is not a verdict: {problem}; {_EXPECTED}"
    )


def _strip(text: str) -> str:
    body = text.strip()
    while True:
        marker = next((m for m in _END_MARKERS if body.endswith(m)), None)
        if marker is None:
            return body
        body = body[: -len(marker)].strip()


def parse_verdict(text: str) -> Verdict:
    """Parse a Llama Guard 3/4 generation into a :class:`Verdict`.

    Raises:
        JudgeParseError: ``text`` is not the verdict format (empty, another first word,
            ``unsafe`` without exactly one line of known codes, ``safe`` with more lines).
    """
    lines = [line.strip() for line in _strip(text).splitlines() if line.strip()]
    if not lines:
        raise _fail(text, "it is empty")
    word = lines[0].lower()
    if word not in VERDICTS:
        raise _fail(text, f"the first line {_short(lines[0], 40)} is not 'safe' or 'unsafe'")
    if word == "safe":
        if len(lines) > 1:
            raise _fail(text, "'safe' is followed by more lines")
        return Verdict(is_safe=True)
    if len(lines) != 2:
        problem = "'unsafe' has no category line" if len(lines) == 1 else "it has extra lines"
        raise _fail(text, problem)
    codes: list[str] = []
    for raw in lines[1].split(","):
        code = raw.strip().upper()
        if code not in CATEGORIES:
            raise _fail(text, f"{_short(raw.strip(), 40)} is not a category code")
        if code not in codes:
            codes.append(code)
    return Verdict(is_safe=False, categories=tuple(codes))
