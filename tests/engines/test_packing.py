"""Prefix-tree packing: every token sees exactly its naive context, every prefix is computed once."""

from __future__ import annotations

import random

import pytest

from ray_bench.engines.packing import (
    PAD_SEGMENT,
    TreeNode,
    attends,
    layout_tree,
    pack_group,
    pack_question,
)


def _visible(row, r: int) -> list[int]:
    """Row positions token ``r`` attends to, by the ancestry-walk reference rule."""
    return [k for k in range(row.length) if attends(row.parents, row.segment_ids[r], row.segment_ids[k], r, k)]


def _check_row(prompts: list[list[int]], choices: list[list[list[int]]]) -> None:
    """Brute-force check of a packed group against the naive ``prompt + choice`` sequences."""
    row = pack_group(prompts, choices)
    naive_prefixes = {tuple(p + c)[: i + 1] for p, cs in zip(prompts, choices) for c in cs for i in range(len(p + c))}
    for r in range(row.length):
        seen = _visible(row, r)
        # One token per naive position 0..pos, in order, and together a naive prefix:
        # the token's context is exactly what it has in its own sequence.
        assert [row.position_ids[k] for k in seen] == list(range(row.position_ids[r] + 1))
        assert tuple(row.input_ids[k] for k in seen) in naive_prefixes
        # The visible_until form (used by the tensor mask) agrees with the ancestry walk.
        assert seen == [k for k in range(r + 1) if r < row.visible_until[k]]
    # Every target is predicted from exactly its naive context, and nothing else is scored.
    flat = [(q, c) for q, cs in enumerate(choices) for c in range(len(cs))]
    done: dict[int, int] = {}
    for src, tok, ch in zip(row.target_source, row.target_ids, row.target_choice):
        q, c = flat[ch]
        t = done.get(ch, 0)
        seq = prompts[q] + choices[q][c]
        context = tuple(row.input_ids[k] for k in _visible(row, row.source_positions[src]))
        assert context + (tok,) == tuple(seq[: len(prompts[q]) + t + 1])
        done[ch] = t + 1
    assert [done[ch] for ch in range(len(flat))] == [len(choices[q][c]) for q, c in flat]
    assert row.num_tokens == tuple(len(choices[q][c]) for q, c in flat)
    assert row.choices_per_question == tuple(len(cs) for cs in choices)
    assert len(set(row.source_positions)) == len(row.source_positions)
    # Maximal sharing: each distinct prompt prefix once, plus every choice token.
    distinct = {tuple(p[: i + 1]) for p in prompts for i in range(len(p))}
    assert row.length == len(distinct) + sum(len(c) for cs in choices for c in cs)


def test_pack_question_is_the_two_level_tree() -> None:
    pq = pack_question([1, 5, 6], [[7, 8], [9], [10, 11, 12]])
    assert pq.parents == (-1, 0, 0, 0)
    assert pq.visible_until == (9, 9, 9, 5, 5, 6, 9, 9, 9)
    assert pq.choices_per_question == (3,)
    _check_row([[1, 5, 6]], [[[7, 8], [9], [10, 11, 12]]])


def test_group_layout_by_hand() -> None:
    # Shared prefix [1, 2]; q0 continues with [3], q1 with [4, 5]; q2's prompt is the prefix.
    row = pack_group([[1, 2, 3], [1, 2, 4, 5], [1, 2]], [[[7], [8, 9]], [[7]], [[6]]])
    assert row.input_ids == (1, 2, 6, 3, 7, 8, 9, 4, 5, 7)
    assert row.position_ids == (0, 1, 2, 2, 3, 3, 4, 2, 3, 4)
    assert row.parents == (-1, 0, 0, 2, 2, 0, 5)
    assert row.visible_until == (10, 10, 3, 7, 5, 7, 7, 10, 10, 10)
    # q2's choice [6] is predicted by the last shared token; q0's first tokens by its "3".
    sources = [row.source_positions[s] for s in row.target_source]
    assert list(zip(row.target_choice, sources, row.target_ids)) == [
        (0, 3, 7), (1, 3, 8), (1, 5, 9), (2, 8, 7), (3, 1, 6)
    ]
    assert row.num_tokens == (1, 2, 1, 1) and row.choices_per_question == (2, 1, 1)


@pytest.mark.parametrize(
    "prompts,choices",
    [
        ([[1, 2, 3]], [[[4], [5, 6]]]),  # one question
        ([[1, 2, 3], [1, 2, 3]], [[[4], [5]], [[5, 6], [7]]]),  # identical prompts, different choices
        ([[1, 2, 3], [1, 2, 3]], [[[4], [4]], [[4], [4]]]),  # identical everything
        ([[1, 2], [1, 2, 3, 4], [1, 2, 3]], [[[9]], [[8, 8]], [[7]]]),  # prompts prefixes of others
        ([[1, 2, 3], [4, 5, 6], [7]], [[[1]], [[2]], [[3, 3]]]),  # nothing shared: a forest
        ([[5], [5, 5], [5, 5, 5], [5, 5, 5, 5]], [[[5]], [[5]], [[5]], [[5]]]),  # a chain
        ([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 6], [1, 7]], [[[1, 2]], [[3]], [[4]], [[5, 6]]]),  # nested
    ],
)
def test_degenerate_groups(prompts, choices) -> None:
    _check_row(prompts, choices)


def test_random_groups_with_heavy_sharing() -> None:
    rng = random.Random(5)
    for _ in range(60):
        stems = [[rng.randrange(4) for _ in range(rng.randint(0, 6))] for _ in range(3)]
        prompts = []
        for _ in range(rng.randint(1, 7)):
            p = rng.choice(stems) + [rng.randrange(4) for _ in range(rng.randint(0, 4))]
            prompts.append(p or [0])
        choices = [[[rng.randrange(4) for _ in range(rng.randint(1, 3))] for _ in range(rng.randint(1, 4))] for _ in prompts]
        _check_row(prompts, choices)


def test_long_chain_does_not_recurse() -> None:
    prompts = [[3] * n for n in range(1200, 0, -1)]
    row = pack_group(prompts, [[[1]]] * len(prompts))
    assert row.length == 1200 + 1200 and max(row.position_ids) == 1200


@pytest.mark.parametrize(
    "prompts,choices,message",
    [
        ([[]], [[[1]]], "prompt has no tokens"),
        ([[1]], [[]], "no choices"),
        ([[1]], [[[2], []]], "choice 1 has no tokens"),
        ([], [], "at least one question"),
    ],
)
def test_pack_group_rejects_degenerate_input(prompts, choices, message) -> None:
    with pytest.raises(ValueError, match=message):
        pack_group(prompts, choices)


def test_layout_tree_positions_continue_from_the_parent() -> None:
    layout = layout_tree([TreeNode(-1, (1, 2)), TreeNode(0, (3,)), TreeNode(1, (4, 5)), TreeNode(0, (6,)), TreeNode(-1, (7,))])
    assert layout.position_ids == (0, 1, 2, 3, 4, 2, 0)
    assert layout.segment_ids == (0, 0, 1, 2, 2, 3, 4)
    assert layout.visible_until == (6, 6, 5, 5, 5, 6, 7)
    assert layout.node_start == (0, 2, 3, 5, 6)


def test_layout_tree_rejects_bad_trees() -> None:
    with pytest.raises(ValueError, match="no tokens"):
        layout_tree([TreeNode(-1, ())])
    with pytest.raises(ValueError, match="pre-order"):
        # Node 3's parent (1) is in a subtree that node 2 (a new root) already closed.
        layout_tree([TreeNode(-1, (1,)), TreeNode(0, (2,)), TreeNode(-1, (3,)), TreeNode(1, (4,))])


def test_attends_rule() -> None:
    parents = (-1, 0, 0, 1)  # prompt 0 -> choices 1, 2; node 3 under 1
    assert attends(parents, 1, 0, 5, 2)
    assert attends(parents, 1, 1, 5, 4)
    assert attends(parents, 3, 0, 9, 0) and attends(parents, 3, 1, 9, 4)
    assert not attends(parents, 2, 1, 6, 4)  # a sibling, though earlier in the row
    assert not attends(parents, 1, 0, 2, 5)  # never the future
    assert not attends(parents, 1, PAD_SEGMENT, 5, 4)
    assert not attends(parents, PAD_SEGMENT, 0, 9, 0)
    assert attends(parents, PAD_SEGMENT, PAD_SEGMENT, 9, 9)


def test_tree_mask_tensor_matches_rule() -> None:
    torch = pytest.importorskip("torch")
    from ray_bench.engines.hf_scoring import tree_mask

    rows = [
        pack_group([[1, 2, 3], [1, 2, 4, 5], [1, 2]], [[[7], [8, 9]], [[7]], [[6]]]),
        pack_question([1, 5], [[7], [8, 9]]),
    ]
    width = max(r.length for r in rows) + 2
    visible = torch.full((len(rows), width), width, dtype=torch.long)
    for b, r in enumerate(rows):
        visible[b, : r.length] = torch.tensor(r.visible_until)
    mask = tree_mask(visible, as_bool=True, dtype=torch.float32)
    assert mask.shape == (2, 1, width, width) and mask.dtype == torch.bool
    for b, r in enumerate(rows):
        seg = list(r.segment_ids) + [PAD_SEGMENT] * (width - r.length)
        for q in range(width):
            for k in range(width):
                assert bool(mask[b, 0, q, k]) == attends(r.parents, seg[q], seg[k], q, k), (b, q, k)
        assert mask[b, 0].any(dim=-1).all()  # no empty row, so no NaN from padding
    additive = tree_mask(visible, as_bool=False, dtype=torch.float32)
    assert torch.equal(additive == 0, mask)
