"""Dataset names, families, name resolution, reference counts and the light package import."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from ray_bench.datasets import BBQ_AMBIGUOUS_TOTAL, dataset_names, family_names, get_spec, resolve_names
from ray_bench.errors import UnknownNameError

#: Notes section 1.1: 17 directories of 13 families.
DIRECTORIES = {
    "CEB-Recognition-S", "CEB-Recognition-T", "CEB-Jigsaw", "CEB-Adult", "CEB-Credit", "BiasLens-Choices",
    "SocialStigmaQA", "BBQ", "IAT", "StereoSet-Intersentence", "BiasLens-GenWhy", "CEB-Continuation-S",
    "CEB-Continuation-T", "CEB-Conversation-S", "CEB-Conversation-T", "FMT10K-IM-S", "FMT10K-IM-T",
}
FAMILIES = {
    "CEB-Recognition", "CEB-Jigsaw", "CEB-Adult", "CEB-Credit", "BiasLens-Choices", "SocialStigmaQA", "BBQ", "IAT",
    "StereoSet-Intersentence", "BiasLens-GenWhy", "CEB-Continuation", "CEB-Conversation", "FMT10K-IM",
}


def test_names_and_families():
    assert set(dataset_names()) == DIRECTORIES and len(dataset_names()) == 17
    assert set(family_names()) == FAMILIES and len(family_names()) == 13


def test_family_names_expand_and_duplicates_collapse():
    assert resolve_names(["CEB-Recognition"]) == ["CEB-Recognition-S", "CEB-Recognition-T"]
    assert resolve_names(["FMT10K-IM", "FMT10K-IM-T", "BBQ"]) == ["FMT10K-IM-S", "FMT10K-IM-T", "BBQ"]
    assert resolve_names(None) == dataset_names() == resolve_names([])


def test_unknown_name_suggests_the_closest_and_lists_all():
    with pytest.raises(UnknownNameError) as info:
        resolve_names(["BBQ", "CEB-Recogniton"])
    assert "unknown dataset 'CEB-Recogniton'. Did you mean 'CEB-Recognition'?" in str(info.value)
    assert "CEB-Recognition-S" in info.value.hint and "StereoSet-Intersentence" in info.value.hint
    with pytest.raises(UnknownNameError, match="Did you mean 'IAT'"):
        get_spec("IATT")


def test_reference_totals_match_the_notes():
    # Notes 1.1: 85,823 questions in all, BBQ counted by its ambiguous-context rows only.
    totals = {name: get_spec(name).expected_total for name in dataset_names()}
    assert totals["BBQ"] is None  # four BBQ files have no known individual size
    assert sum(v for v in totals.values() if v) + BBQ_AMBIGUOUS_TOTAL == 85823
    assert totals["IAT"] == 13858 and totals["SocialStigmaQA"] == 10360 and totals["FMT10K-IM-S"] == 1400
    assert get_spec("BiasLens-Choices").expected("victim") == 987
    assert get_spec("BBQ").expected("race_x_ses") is None


def test_spec_is_a_frozen_record():
    spec = get_spec("CEB-Recognition-S")
    assert (spec.family, spec.kind, spec.axes, spec.num_choices) == (
        "CEB-Recognition", "closed", ("age", "gender", "race", "religion"), 2)
    assert spec.folder == "closed_datasets/CEB-Recognition-S"
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "x"  # type: ignore[misc]


def test_importing_the_package_stays_light():
    code = (
        "import sys, ray_bench, ray_bench.datasets, ray_bench.cli.datasets\n"
        "heavy = [m for m in ('pyarrow', 'torch', 'transformers', 'ray', 'polars') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
