"""What the 13 bias datasets (17 directories) are: names, families, axes and expected counts.

Everything here is plain data; nothing is read from disk. The counts come from the
reference benchmark's inventory (one number per source file, i.e. per social axis).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ray_bench.errors import UnknownNameError
from ray_bench.registry import Registry
from ray_bench.schema import KIND_CLOSED, KIND_OPEN


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset directory (the unit that becomes one Parquet file).

    Attributes:
        name: Directory name, e.g. ``CEB-Recognition-S``; also the Parquet file stem.
        family: Dataset family, e.g. ``CEB-Recognition`` (the ``dataset`` column).
        kind: ``closed`` (scored choices) or ``open`` (generated text).
        axes: Social axes in source order; each is one ``<axis>.json`` file.
        expected_counts: ``(axis, rows)`` pairs; ``rows`` is ``None`` where no reference count exists.
        num_choices: Choices per question for closed datasets, else ``None``.
        generated: True when the rows are generated locally (IAT) instead of read from JSON.
        description: One line for ``ray-bench datasets list``.
        expected_ambiguous: Reference ambiguous-context total (BBQ only: its files hold both contexts).
    """

    name: str
    family: str
    kind: str
    axes: tuple[str, ...]
    expected_counts: tuple[tuple[str, int | None], ...]
    num_choices: int | None
    generated: bool = False
    description: str = ""
    expected_ambiguous: int | None = None

    @property
    def folder(self) -> str:
        """Relative folder of the source files, e.g. ``closed_datasets/BBQ``."""
        return f"{self.kind}_datasets/{self.name}"

    def expected(self, axis: str) -> int | None:
        """Reference row count of one axis file (``None`` when unknown or not an axis)."""
        return dict(self.expected_counts).get(axis)

    @property
    def expected_total(self) -> int | None:
        """Reference row count of the whole directory, ``None`` when any axis is unknown."""
        counts = [n for _, n in self.expected_counts]
        return None if any(n is None for n in counts) else sum(counts)  # type: ignore[arg-type]


#: Every dataset directory, filled below in the reference inventory order.
DATASETS: Registry[DatasetSpec] = Registry("dataset")

_BBQ_AXES = {
    # Full file sizes (both context conditions). The four race/ses files are absent from the
    # reference snapshot and only their ambiguous-context total (20,424) is known.
    "age": 3680,
    "disability_status": 1556,
    "gender_identity": 5672,
    "nationality": 3080,
    "physical_appearance": 1576,
    "race_ethnicity": None,
    "race_x_gender": None,
    "race_x_ses": None,
    "religion": 1200,
    "ses": None,
    "sexual_orientation": 864,
}
_BIASLENS_CHOICES = {
    "ability": 982, "age": 998, "body": 989, "character": 985, "culture": 997, "gender": 1000,
    "occupations": 997, "race": 1000, "religion": 995, "social": 987, "victim": 987,
}
_BIASLENS_GENWHY = {
    "ability": 995, "age": 1000, "body": 999, "character": 1000, "culture": 1000, "gender": 1000,
    "occupations": 1000, "race": 980, "religion": 1000, "social": 1000, "victim": 998,
}
_CEB_FOUR = ("age", "gender", "race", "religion")


_CLOSED, _OPEN = KIND_CLOSED, KIND_OPEN
#: Reference total of BBQ ambiguous-context rows (the only half the reference analyses).
BBQ_AMBIGUOUS_TOTAL = 29238

# (name, family, kind, {axis: rows}, choices, description, generated); reference inventory order.
_TABLE: tuple[tuple[str, str, str, dict[str, int | None], int | None, str, bool], ...] = (
    ("CEB-Recognition-S", "CEB-Recognition", _CLOSED, dict.fromkeys(_CEB_FOUR, 200), 2,
     "Is this sentence a stereotype? (recognition)", False),
    ("CEB-Recognition-T", "CEB-Recognition", _CLOSED, dict.fromkeys(_CEB_FOUR, 200), 2,
     "Is this sentence toxic? (recognition)", False),
    ("CEB-Jigsaw", "CEB-Jigsaw", _CLOSED, dict.fromkeys(("gender", "race", "religion"), 500), 2,
     "Is this identity-mentioning comment toxic?", False),
    ("CEB-Adult", "CEB-Adult", _CLOSED, dict.fromkeys(("gender", "race"), 500), 2,
     "Does this person earn over $50K? (equal outcomes)", False),
    ("CEB-Credit", "CEB-Credit", _CLOSED, dict.fromkeys(("age", "gender"), 500), 2,
     "Will this person default? (equal outcomes)", False),
    ("BiasLens-Choices", "BiasLens-Choices", _CLOSED, _BIASLENS_CHOICES, 3,
     "Pick a group, or decline to choose", False),
    ("SocialStigmaQA", "SocialStigmaQA", _CLOSED, {"yes_no": 10360}, 3,
     "Yes / no / can't tell about a stigmatized person", False),
    ("BBQ", "BBQ", _CLOSED, _BBQ_AXES, 3,
     "Question answering under ambiguous or informative context", False),
    ("IAT", "IAT", _CLOSED, {"race": 7733, "gender": 4681, "religion": 768, "health": 612, "age": 64}, 4,
     "Word-pairing implicit association test (generated)", True),
    ("StereoSet-Intersentence", "StereoSet-Intersentence", _CLOSED,
     {"gender": 242, "profession": 827, "race": 976, "religion": 78}, 3,
     "Continue with a stereotype, anti-stereotype or unrelated sentence", False),
    ("BiasLens-GenWhy", "BiasLens-GenWhy", _OPEN, _BIASLENS_GENWHY, None,
     "Why-questions that presuppose a stereotype", False),
    ("CEB-Continuation-S", "CEB-Continuation", _OPEN, dict.fromkeys(_CEB_FOUR, 100), None,
     "Continue a stereotyped article", False),
    ("CEB-Continuation-T", "CEB-Continuation", _OPEN, dict.fromkeys(_CEB_FOUR, 100), None,
     "Continue a toxic article", False),
    ("CEB-Conversation-S", "CEB-Conversation", _OPEN, dict.fromkeys(_CEB_FOUR, 100), None,
     "Reply to a stereotyped conversation", False),
    ("CEB-Conversation-T", "CEB-Conversation", _OPEN, dict.fromkeys(_CEB_FOUR, 100), None,
     "Reply to a toxic conversation", False),
    ("FMT10K-IM-S", "FMT10K-IM", _OPEN,
     {"age": 79, "appearance": 75, "disable": 149, "gender": 439, "race": 327, "religion": 331}, None,
     "5-turn misinformation dialogue (stereotype)", False),
    ("FMT10K-IM-T", "FMT10K-IM", _OPEN, {"disable": 30, "gender": 61, "race": 98, "religion": 66}, None,
     "5-turn misinformation dialogue (toxicity)", False),
)

for _name, _family, _kind, _counts, _k, _desc, _gen in _TABLE:
    DATASETS.add(
        _name,
        DatasetSpec(
            name=_name,
            family=_family,
            kind=_kind,
            axes=tuple(_counts),
            expected_counts=tuple(_counts.items()),
            num_choices=_k,
            generated=_gen,
            description=_desc,
            expected_ambiguous=BBQ_AMBIGUOUS_TOTAL if _name == "BBQ" else None,
        ),
    )


#: Locally generated audit designs (``ray-bench datasets housing``). Kept apart from
#: :data:`DATASETS` so the 17 directories / 13 families and their counts stay as they are;
#: they are accepted wherever a dataset is named explicitly, never part of "all datasets".
DESIGN_DATASETS: Registry[DatasetSpec] = Registry("dataset")
for _design, _rows in (("v1", 47520), ("v2", 21600)):
    DESIGN_DATASETS.add(
        f"Housing-{_design}",
        DatasetSpec(
            name=f"Housing-{_design}", family="Housing", kind=_OPEN, axes=("race_x_gender",),
            expected_counts=(("race_x_gender", _rows),), num_choices=None, generated=True,
            description=f"Housing audit {_design}: landlord scores a tenant 0-100 (counterfactual names)",
        ),
    )
# ``ray-bench datasets occupations``: K personas per occupation of a reference table; the row
# count depends on the table and K, so there is no reference count.
DESIGN_DATASETS.add(
    "Occupations",
    DatasetSpec(
        name="Occupations", family="Occupations", kind=_OPEN, axes=("demographics",),
        expected_counts=(("demographics", None),), num_choices=None, generated=True,
        description="Personas per occupation vs a reference distribution (gap to BLS-style shares)",
    ),
)


def is_design(name: str) -> bool:
    """True for a generated audit design (``Housing-v1``/``Housing-v2``), made by its own command."""
    return name in DESIGN_DATASETS


def dataset_names() -> list[str]:
    """All dataset directory names, closed ones first, in the reference inventory order."""
    return DATASETS.names()


def family_names() -> list[str]:
    """All family names (13), in first-appearance order."""
    return list(dict.fromkeys(DATASETS.get(n).family for n in DATASETS))


def get_spec(name: str) -> DatasetSpec:
    """The spec of a dataset directory; unknown names raise :class:`UnknownNameError`."""
    if name in DESIGN_DATASETS:
        return DESIGN_DATASETS.get(name)
    if name not in DATASETS:
        raise UnknownNameError("dataset", name, _known_names())
    return DATASETS.get(name)


def resolve_names(names: Iterable[str] | None = None) -> list[str]:
    """Expand directory and family names into directory names.

    Args:
        names: Directory names (``CEB-Recognition-S``) or family names (``CEB-Recognition``,
            which expands to all its directories). ``None`` or empty means every dataset.

    Returns:
        Directory names without duplicates, in the order given.

    Raises:
        UnknownNameError: A name is neither a directory nor a family (with the closest match).
    """
    wanted = list(names or [])
    if not wanted:
        return dataset_names()
    out: dict[str, None] = {}
    for name in wanted:
        if name in DATASETS or name in DESIGN_DATASETS:
            out[name] = None
            continue
        members = [n for n in DATASETS if DATASETS.get(n).family == name]
        members = members or [n for n in DESIGN_DATASETS if DESIGN_DATASETS.get(n).family == name]
        if not members:
            raise UnknownNameError("dataset", name, _known_names())
        out.update(dict.fromkeys(members))
    return list(out)


def _known_names() -> list[str]:
    designs = {n for n in DESIGN_DATASETS} | {DESIGN_DATASETS.get(n).family for n in DESIGN_DATASETS}
    return sorted(set(dataset_names()) | set(family_names()) | designs)
