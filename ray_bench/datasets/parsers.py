"""One parser per dataset family: a repackaged source row in, a :class:`Question` out.

Parsers are registered by family name. Each validates what its family needs (field
presence and types, index ranges, label vocabularies) and derives the columns the
analysis relies on: ``choice_labels``, ``group``, ``context_condition``, ``answer_index``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ray_bench.datasets.records import Question, RowContext
from ray_bench.registry import Registry

Parser = Callable[[Mapping[str, Any], RowContext], Question]

#: Family name -> row parser.
PARSERS: Registry[Parser] = Registry("dataset parser")

_BIASED_UNBIASED = frozenset({"biased", "unbiased", "uncertain"})
_IAT_LABELS = frozenset({"biased_1", "biased_2", "unbiased_1", "unbiased_2"})
_STEREOSET_LABELS = frozenset({"stereotype", "anti-stereotype", "unrelated"})
_BBQ_CONTEXTS = ("ambig", "disambig")
#: CEB yes/no tasks: the label names the correct choice (choices are [YES..., NO...]).
_YES_NO_INDEX = {"yes": 0, "no": 1}
#: FairMT-Bench dialogues always have five user turns.
_FMT_TURNS = tuple(f"{k}-turn Conv" for k in range(5))


@PARSERS.register("BBQ")
def parse_bbq(raw: Mapping[str, Any], ctx: RowContext) -> Question:
    """BBQ: labels from the 1-based ``target_label`` (biased) and ``unknown_label`` (uncertain)."""
    choices = ctx.choices(raw)
    target = ctx.index_1based(raw, "target_label", len(choices))
    unknown = ctx.index_1based(raw, "unknown_label", len(choices))
    answer = ctx.index_1based(raw, "answer_label", len(choices))
    if target == unknown:
        raise ctx.fail("target_label and unknown_label name the same choice", "target_label")
    condition = ctx.string(raw, "context_condition")
    if condition not in _BBQ_CONTEXTS:
        raise ctx.fail(f"expected one of {list(_BBQ_CONTEXTS)}, got {condition!r}", "context_condition")
    labels = ["unbiased"] * len(choices)
    labels[target], labels[unknown] = "biased", "uncertain"
    groups = ctx.string_list(raw, "stereotyped_groups")
    return ctx.question(
        raw,
        choices=choices,
        choice_labels=labels,
        group=bbq_group(groups, choices[target]),
        context_condition=condition,
        answer_index=answer,
    )


def bbq_group(groups: list[str], target_text: str) -> str | None:
    """The stereotyped group named in the target choice, else the first group (``None`` if none)."""
    text = target_text.lower()
    for group in groups:
        if group.lower() in text:
            return group
    return groups[0] if groups else None


@PARSERS.register("BiasLens-Choices")
def parse_biaslens_choices(raw: Mapping[str, Any], ctx: RowContext) -> Question:
    """BiasLens multiple choice: the source ``label`` list (biased/unbiased/uncertain)."""
    choices = ctx.choices(raw)
    labels = ctx.labels(raw, "label", len(choices), _BIASED_UNBIASED)
    return ctx.question(raw, choices=choices, choice_labels=labels)


@PARSERS.register("SocialStigmaQA")
def parse_social_stigma_qa(raw: Mapping[str, Any], ctx: RowContext) -> Question:
    """SocialStigmaQA yes/no/can't tell: the source ``label`` list; group = ``stigma``."""
    choices = ctx.choices(raw)
    labels = ctx.labels(raw, "label", len(choices), _BIASED_UNBIASED)
    return ctx.question(raw, choices=choices, choice_labels=labels, group=ctx.optional_string(raw, "stigma"))


@PARSERS.register("IAT")
def parse_iat(raw: Mapping[str, Any], ctx: RowContext) -> Question:
    """IAT word pairing: the source ``label`` list; group = the social aspect (e.g. ``islam``)."""
    choices = ctx.choices(raw)
    labels = ctx.labels(raw, "label", len(choices), _IAT_LABELS)
    # The aspect names the contrast (islam, weight, ...); the stigmatized word itself is often
    # a person's first name, too fine-grained to serve as a social group.
    group = ctx.optional_string(raw, "social_aspect")
    return ctx.question(raw, choices=choices, choice_labels=labels, group=group)


@PARSERS.register("StereoSet-Intersentence")
def parse_stereoset(raw: Mapping[str, Any], ctx: RowContext) -> Question:
    """StereoSet: the source ``label`` list; group = ``descriptor`` (the target term)."""
    choices = ctx.choices(raw)
    labels = ctx.labels(raw, "label", len(choices), _STEREOSET_LABELS)
    return ctx.question(raw, choices=choices, choice_labels=labels, group=ctx.optional_string(raw, "descriptor"))


@PARSERS.register("CEB-Recognition")
def parse_ceb_recognition(raw: Mapping[str, Any], ctx: RowContext) -> Question:
    """CEB recognition: ``target`` (1-based) is the correct choice, the others are incorrect."""
    choices = ctx.choices(raw)
    answer = ctx.index_1based(raw, "target", len(choices))
    return ctx.question(raw, choices=choices, choice_labels=_correct_at(answer, len(choices)), answer_index=answer)


def parse_ceb_yes_no(raw: Mapping[str, Any], ctx: RowContext) -> Question:
    """CEB Adult/Credit/Jigsaw: ``label`` yes -> choice 0, no -> choice 1; group = ``sensitive_attr``."""
    choices = ctx.choices(raw)
    label = ctx.string(raw, "label")
    answer = _YES_NO_INDEX.get(label.strip().lower())
    if answer is None:
        raise ctx.fail(f"expected 'yes' or 'no', got {label!r}", "label")
    return ctx.question(
        raw,
        choices=choices,
        choice_labels=_correct_at(answer, len(choices)),
        group=ctx.optional_string(raw, "sensitive_attr"),
        answer_index=answer,
    )


for _family in ("CEB-Adult", "CEB-Credit", "CEB-Jigsaw"):
    PARSERS.add(_family, parse_ceb_yes_no)


@PARSERS.register("BiasLens-GenWhy")
def parse_biaslens_genwhy(raw: Mapping[str, Any], ctx: RowContext) -> Question:
    """BiasLens why-questions: prompt only (groups need the reference's GPT-4o extraction)."""
    return ctx.question(raw)


def parse_ceb_open(raw: Mapping[str, Any], ctx: RowContext) -> Question:
    """CEB continuation/conversation: the full instruction prompt; group = ``descriptor``."""
    return ctx.question(raw, group=ctx.optional_string(raw, "descriptor"))


for _family in ("CEB-Continuation", "CEB-Conversation"):
    PARSERS.add(_family, parse_ceb_open)


@PARSERS.register("FMT10K-IM")
def parse_fmt10k(raw: Mapping[str, Any], ctx: RowContext) -> Question:
    """FairMT-Bench: five user turns; ``prompt`` is the first, ``turns`` holds all five."""
    turns = [ctx.string(raw, key) for key in _FMT_TURNS]
    return ctx.question(raw, prompt_field=_FMT_TURNS[0], turns=turns)


def _correct_at(answer: int, num_choices: int) -> list[str]:
    return ["correct" if i == answer else "incorrect" for i in range(num_choices)]
