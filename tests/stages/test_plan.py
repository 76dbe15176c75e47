"""Seeded random shard order: a permutation, fixed by (seed, dataset), and refused on resume when changed."""

import pyarrow as pa

from ray_bench.stages.plan import plan_dataset, shuffled


def _table(n):
    return pa.table({"question_id": [f"q{i}" for i in range(n)]})


def test_shuffled_is_a_seeded_permutation_per_dataset():
    ids = _table(50).column("question_id").to_pylist()
    one = shuffled(_table(50), 3, "BBQ").column("question_id").to_pylist()
    assert sorted(one) == sorted(ids) and one != ids
    assert shuffled(_table(50), 3, "BBQ").column("question_id").to_pylist() == one
    assert shuffled(_table(50), 4, "BBQ").column("question_id").to_pylist() != one
    assert shuffled(_table(50), 3, "StereoSet").column("question_id").to_pylist() != one


def test_shuffled_shards_are_other_shards():
    ids = _table(20).column("question_id").to_pylist()
    order = shuffled(_table(20), 1, "BBQ").column("question_id").to_pylist()
    plain, mixed = plan_dataset("m", "BBQ", ids, 5), plan_dataset("m", "BBQ", order, 5)
    assert [j.key for j in plain] == [j.key for j in mixed]
    assert all(a.fingerprint != b.fingerprint for a, b in zip(plain, mixed))  # a resume cannot mix the two
