"""Attribute extractors: from a generated answer to one category of a reference attribute.

Every extractor maps ``(text, attribute)`` to an :class:`Extraction` with one of three
outcomes, all counted (notes: audits-and-exports.md 5, "parse failures are first-class
outcomes, never silently dropped"):

* ``ok``: a category of the attribute (``category`` set);
* ``unparsed``: the extractor found no answer (no ``Gender:`` field, no pronoun, a tie);
* ``unmatched``: it found an answer that is no category or synonym (``Race: Hispanic`` when
  race has White / Black / Asian / other; ``woman|man`` copied from the format line).

Answers are compared after :func:`~ray_bench.datasets.reference.normalize_answer`, by whole
value, never by substring (PreciseDebias took the first table key found *in* the text, so
"not Hispanic" would have counted as "Hispanic").

Registered extractors (:data:`EXTRACTORS`):

* ``self_report``: the structured line the occupations prompt asks for, ``Label: value``
  (label case-insensitive, ``:`` or ``=``, markdown emphasis allowed, value up to ``;``, the
  line's end or a ``|`` / ``,`` that starts the next field; ``<woman|man>`` copied from the
  format line is therefore ``unmatched``, not its first option). The *last* field with the
  label counts: the prompt asks for the line at the end, and a persona's text may mention
  the word earlier.
* ``pronouns``: gender only, from third-person pronouns in free text: he/him/his/himself vs
  she/her/hers/herself, whole words. More he-forms -> ``man``, more she-forms -> ``woman``; a
  tie with both present -> ``unparsed``; none of either but they/them/their/theirs/themselves ->
  ``nonbinary`` (``ok`` only when the attribute has such a category, else ``unmatched``);
  no pronoun at all -> ``unparsed``. It reads the persona, not a self-report, so "they" used
  for a group is miscounted; use it as a cross-check of ``self_report``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from ray_bench.datasets.reference import Attribute, normalize_answer
from ray_bench.errors import AnalysisError
from ray_bench.registry import Registry

OK, UNPARSED, UNMATCHED = "ok", "unparsed", "unmatched"
OUTCOMES = (OK, UNPARSED, UNMATCHED)


@dataclass(frozen=True)
class Extraction:
    """What an extractor read from one answer.

    Attributes:
        outcome: ``ok``, ``unparsed`` or ``unmatched``.
        category: The attribute's category when ``outcome`` is ``ok``, else ``None``.
        value: The raw value found (``None`` when unparsed), for audits of unmatched answers.
    """

    outcome: str
    category: str | None = None
    value: str | None = None


@runtime_checkable
class Extractor(Protocol):
    """What every extractor implements."""

    name: str

    def extract(self, text: str | None, attribute: Attribute) -> Extraction:
        """The category of ``attribute`` that ``text`` states (or why there is none)."""
        ...


#: Extractors by name; register with ``@EXTRACTORS.register("name")`` on a class.
EXTRACTORS: Registry[type] = Registry("extractor")


def lookup(attribute: Attribute) -> Mapping[str, str]:
    """Normalized answer -> category, for the categories themselves and their synonyms (built once per attribute)."""
    return _lookup(attribute.categories, tuple(attribute.synonyms.items()))


@functools.lru_cache(maxsize=64)
def _lookup(categories: tuple[str, ...], synonyms: tuple[tuple[str, tuple[str, ...]], ...]) -> Mapping[str, str]:
    table = {normalize_answer(c): c for c in categories}
    for category, words in synonyms:
        table.update({normalize_answer(w): category for w in words})
    return MappingProxyType(table)


def match(value: str, attribute: Attribute) -> Extraction:
    """``ok`` when ``value`` is a category or synonym of ``attribute``, else ``unmatched``."""
    category = lookup(attribute).get(normalize_answer(value))
    return Extraction(OK, category, value) if category is not None else Extraction(UNMATCHED, None, value)


@EXTRACTORS.register("self_report")
class SelfReport:
    """The ``Label: value`` line the occupations prompt asks for (see the module docstring)."""

    name = "self_report"

    def extract(self, text: str | None, attribute: Attribute) -> Extraction:
        """The last ``<label>: value`` field of ``text``, matched against the attribute."""
        if not text:
            return Extraction(UNPARSED)
        found = _field_pattern(attribute.label).findall(text)
        if not found:
            return Extraction(UNPARSED)
        return match(found[-1].strip(), attribute)


@functools.lru_cache(maxsize=64)
def _field_pattern(label: str) -> re.Pattern[str]:
    words = r"\s+".join(re.escape(w) for w in label.split())
    # "Gender: woman", "**Gender:** woman", "gender = woman". The value ends at ";", the line's end, or
    # a "|" or "," that starts the next field ("| Race: ..."); a "|" inside the value stays, so the
    # format line copied as it is ("<woman|man>") is unmatched, never its first option.
    end = r"(?=\s*(?:;|\n|$|[|,]\s*[*_]*[A-Za-z][\w ]*[*_]*\s*[:=]))"
    return re.compile(rf"(?<![\w-]){words}\s*[*_]*\s*[:=]\s*[*_]*\s*([^;\n]*?){end}", re.IGNORECASE)


_HE = re.compile(r"\b(?:he|him|his|himself)\b", re.IGNORECASE)
_SHE = re.compile(r"\b(?:she|her|hers|herself)\b", re.IGNORECASE)
_THEY = re.compile(r"\b(?:they|them|their|theirs|themselves)\b", re.IGNORECASE)


@EXTRACTORS.register("pronouns")
class Pronouns:
    """Gender from third-person pronouns in free text (see the module docstring)."""

    name = "pronouns"

    def extract(self, text: str | None, attribute: Attribute) -> Extraction:
        """``man`` / ``woman`` / ``nonbinary`` by pronoun counts, matched against the attribute."""
        if attribute.name != "gender":
            raise AnalysisError(f"the pronouns extractor reads gender only, not {attribute.name!r}",
                                hint="Use --extractor self_report for other attributes.")
        if not text:
            return Extraction(UNPARSED)
        he, she = len(_HE.findall(text)), len(_SHE.findall(text))
        if he != she:
            return match("man" if he > she else "woman", attribute)
        if he == 0 and _THEY.search(text):
            return match("nonbinary", attribute)
        return Extraction(UNPARSED, None, f"he={he}, she={she}" if he else None)


def get_extractor(name: str) -> Extractor:
    """A new extractor registered as ``name`` (:class:`~ray_bench.errors.UnknownNameError` otherwise)."""
    return EXTRACTORS.get(name)()


def extract_all(texts: Sequence[str | None], attribute: Attribute, extractor: Extractor) -> list[Extraction]:
    """One extraction per text, in order."""
    return [extractor.extract(t, attribute) for t in texts]
