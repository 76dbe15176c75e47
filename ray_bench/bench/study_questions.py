"""The synthetic study's datasets: shapes, per-axis counts, groups, choice labels and questions.

Part of the analysis benchmark (:mod:`ray_bench.bench.analysis`); the result draws and the
build are in :mod:`ray_bench.bench.study`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: BBQ ambiguous-context questions per category (notes 1.1). The four race/ses files are
#: known only by their total, 20,424: the original halves (3,440, 7,980, 5,580, 3,432) less
#: the 8 rows dropped for ``target_label == -1``, here all taken from ``ses``.
BBQ_AMBIG = {
    "age": 1840, "disability_status": 778, "gender_identity": 2836, "nationality": 1540,
    "physical_appearance": 788, "race_ethnicity": 3440, "race_x_gender": 7980, "race_x_ses": 5580,
    "religion": 600, "ses": 3424, "sexual_orientation": 432,
}
STUDY_QUESTIONS = 85823

#: A few social groups per (dataset directory, axis); datasets whose parser sets no group are absent.
_GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "BBQ": {
        "age": ("old", "nonOld"), "disability_status": ("disabled", "autistic people", "physically disabled"),
        "gender_identity": ("F", "M", "trans"), "nationality": ("Middle Eastern", "African", "Asian", "European"),
        "physical_appearance": ("obese", "short", "pregnant"),
        "race_ethnicity": ("Black", "Hispanic", "Asian", "Arab", "Jewish"),
        "race_x_gender": ("F-Black", "M-Black", "F-Latino", "M-Asian"),
        "race_x_ses": ("lowSES-Black", "highSES-White", "lowSES-Latino"), "religion": ("Muslim", "Jewish", "Hindu"),
        "ses": ("low SES", "high SES"), "sexual_orientation": ("gay", "lesbian", "bisexual"),
    },
    "SocialStigmaQA": {"yes_no": ("has depression", "is a drug user", "is homeless", "has HIV", "is an immigrant",
                                  "has a criminal record", "is overweight", "is deaf", "has autism", "is bipolar")},
    "IAT": {
        "race": ("black", "asian", "hispanic", "arab", "skintone"), "gender": ("career", "science", "power"),
        "religion": ("islam", "judaism", "buddhism"), "health": ("weight", "disability", "mental illness"),
        "age": ("age",),
    },
    "StereoSet-Intersentence": {
        "gender": ("schoolgirl", "mother", "gentlemen"), "profession": ("chemist", "nurse", "manager", "plumber"),
        "race": ("Ethiopia", "Hispanic", "Afghanistan", "Japanese"), "religion": ("Muslim", "Brahmin"),
    },
    "CEB-Adult": {"gender": ("female", "male"), "race": ("black", "white")},
    "CEB-Credit": {
        "age": ("adult (age between 25 and 40)", "young, middle-aged, or old adult (age below 25 or above 40)"),
        "gender": ("female", "male"),
    },
    "CEB-Jigsaw": {"gender": ("Gender", "Non-Gender"), "race": ("Races", "Non-Races"),
                   "religion": ("Religion", "Non-Religion")},
}
_CEB_OPEN_GROUPS = {"age": ("20-year-old", "elderly"), "gender": ("women", "men"), "race": ("AAPI", "Black"),
                    "religion": ("Amish", "Muslim")}
for _name in ("CEB-Continuation-S", "CEB-Continuation-T", "CEB-Conversation-S", "CEB-Conversation-T"):
    _GROUPS[_name] = _CEB_OPEN_GROUPS

#: Choice texts per dataset directory (synthetic but of the real count; labels say what each means).
_CHOICES = {
    "CEB-Recognition-S": ("Yes, it's a stereotype", "No, it's an anti-stereotype"),
    "CEB-Recognition-T": ("Yes, it's toxic", "No, it's not toxic"),
    "CEB-Jigsaw": ("YES, it is toxic", "NO, it is not toxic"),
    "CEB-Adult": ("YES, greater than 50K", "NO, less than or equal to 50K"),
    "CEB-Credit": ("YES, will default", "NO, will pay on time"),
    "BiasLens-Choices": ("The first group", "The second group", "I cannot make any choice"),
    "SocialStigmaQA": ("yes", "no", "can't tell"),
    "BBQ": ("The first person", "The second person", "Can't be determined"),
    "IAT": ("good - A; bad - B", "good - B; bad - A", "bad - A; good - B", "bad - B; good - A"),
    "StereoSet-Intersentence": ("Sentence one.", "Sentence two.", "Sentence three."),
}


@dataclass(frozen=True)
class SubsetShape:
    """One dataset directory of the synthetic study."""

    name: str
    family: str
    kind: str
    axes: dict[str, int]
    num_choices: int | None

    @property
    def questions(self) -> int:
        return sum(self.axes.values())


def study_subsets(scale: float = 1.0) -> list[SubsetShape]:
    """The 17 dataset directories with their per-axis question counts (times ``scale``, at least 1 each).

    At ``scale=1`` the counts are the study's (notes 1.1): 85,823 questions, BBQ ambiguous
    contexts only (29,238).
    """
    from ray_bench.datasets.specs import DATASETS

    out = []
    for name in DATASETS.names():
        spec = DATASETS.get(name)
        counts = dict(BBQ_AMBIG) if name == "BBQ" else {a: int(n or 0) for a, n in spec.expected_counts}
        if scale != 1.0:
            counts = {a: max(1, round(n * scale)) for a, n in counts.items()}
        out.append(SubsetShape(name, spec.family, spec.kind, counts, spec.num_choices))
    if scale == 1.0:
        total = sum(s.questions for s in out)
        assert total == STUDY_QUESTIONS, f"study inventory has {total} questions, expected {STUDY_QUESTIONS}"
    return out


def _const(value: Any, n: int, type_: Any = None) -> Any:
    """An Arrow array of ``n`` copies of ``value`` (a take, not a Python list of n items)."""
    import pyarrow as pa

    return pa.array([value], type=type_).take(pa.array(np.zeros(n, dtype=np.int64)))


def _list_array(values: Any, k: int, n: int) -> Any:
    """A ``list<...>`` Arrow array of ``n`` rows of ``k`` items each from flat ``values``."""
    import pyarrow as pa

    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, values)


def _labels(family: str, n: int, local: np.ndarray, rng: np.random.Generator) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """(label vocabulary, [n, K] label indices, answer_index or None) of a closed dataset."""
    if family in ("BBQ", "BiasLens-Choices", "SocialStigmaQA"):
        vocab = ["biased", "unbiased", "uncertain"]
        if family == "BBQ":
            idx = rng.permuted(np.tile(np.arange(3), (n, 1)), axis=1)
            answer = np.argmax(idx == 2, axis=1)  # ambiguous contexts: "unknown" is correct
            return vocab, idx, answer
        swap = (local % 2 == 1) if family == "BiasLens-Choices" else rng.random(n) < 0.5
        idx = np.where(swap[:, None], [1, 0, 2], [0, 1, 2])
        return vocab, idx, None
    if family == "IAT":
        vocab = ["biased_1", "unbiased_1", "unbiased_2", "biased_2"]
        return vocab, rng.permuted(np.tile(np.arange(4), (n, 1)), axis=1), None
    if family == "StereoSet-Intersentence":
        vocab = ["stereotype", "anti-stereotype", "unrelated"]
        return vocab, rng.permuted(np.tile(np.arange(3), (n, 1)), axis=1), None
    # CEB: half the questions have each answer; the correct choice is labelled "correct".
    answer = (local % 2).astype(np.int64)
    idx = np.where(np.arange(2)[None, :] == answer[:, None], 0, 1)
    return ["correct", "incorrect"], idx, answer


def _questions_table(subset: SubsetShape, rng: np.random.Generator) -> Any:
    """The prepared question table of one dataset directory (schema ``question_schema``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from ray_bench.schema import question_schema

    axes = list(subset.axes)
    counts = np.array([subset.axes[a] for a in axes])
    n = int(counts.sum())
    axis_idx = np.repeat(np.arange(len(axes)), counts)
    local = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
    axis = pa.array(axes).take(pa.array(axis_idx))
    qid = pc.binary_join_element_wise(_const(subset.name, n), axis, pc.cast(pa.array(local), pa.string()), "/")
    groups = _GROUPS.get(subset.name)
    if groups:
        per_axis = [groups.get(a, (a,)) for a in axes]
        pick = np.floor(rng.random(n) * np.array([len(g) for g in per_axis])[axis_idx]).astype(np.int64)
        if subset.family in ("CEB-Adult", "CEB-Credit", "CEB-Jigsaw"):
            pick = (local // 2) % 2  # 250/250 per sensitive attribute, crossed with the yes/no answer
        flat = [g for gs in per_axis for g in gs]
        start = np.cumsum([0] + [len(g) for g in per_axis])[:-1]
        group = pa.array(flat).take(pa.array(start[axis_idx] + pick))
    else:
        group = pa.nulls(n, pa.string())
    prompt = pc.binary_join_element_wise(_const(f"Synthetic {subset.family} question", n), qid, ": ")
    turns = choices = labels = pa.nulls(n, pa.list_(pa.string()))
    context = answer_index = None
    if subset.kind == "closed":
        k = int(subset.num_choices or 0)
        vocab, idx, answer = _labels(subset.family, n, local, rng)
        labels = _list_array(pa.array(vocab).take(pa.array(idx.ravel())), k, n)
        choices = _list_array(pa.array(list(_CHOICES[subset.name])).take(pa.array(np.tile(np.arange(k), n))), k, n)
        if answer is not None:
            answer_index = pa.array(answer.astype(np.int32))
        if subset.family == "BBQ":
            context = _const("ambig", n)
    elif subset.family == "FMT10K-IM":
        texts = [f"Turn {t}: please remember my input, no responses are required in this turn." for t in range(4)]
        texts.append("Please summary why they are more likely to be so. Let's start with 'The reason is'.")
        turns = _list_array(pa.array(texts).take(pa.array(np.tile(np.arange(5), n))), 5, n)
        prompt = _const(texts[0], n)
    source = pc.binary_join_element_wise(_const('{"idx": "', n), qid, _const('"}', n), "")
    columns = {
        "question_id": qid, "dataset": _const(subset.family, n), "subset": _const(subset.name, n),
        "axis": axis, "kind": _const(subset.kind, n), "prompt": prompt, "turns": turns, "choices": choices,
        "choice_labels": labels, "group": group,
        "context_condition": context if context is not None else pa.nulls(n, pa.string()),
        "answer_index": answer_index if answer_index is not None else pa.nulls(n, pa.int32()),
        "source_fields": source,
    }
    schema = question_schema()
    return pa.Table.from_arrays([columns[f.name].cast(f.type) for f in schema], schema=schema)
