"""Packing one question, grouping questions into rows and rows into batches."""

from __future__ import annotations

import random

import pytest

from ray_bench.engines.batching import group_questions, joins_row, max_position_needed, plan_batches
from ray_bench.engines.packing import common_prefix_length, pack_group, pack_question


def test_pack_question_layout() -> None:
    pq = pack_question([1, 5, 6], [[7, 8], [9], [10, 11, 12]])
    assert pq.input_ids == (1, 5, 6, 7, 8, 9, 10, 11, 12)
    assert pq.position_ids == (0, 1, 2, 3, 4, 3, 3, 4, 5)
    assert pq.segment_ids == (0, 0, 0, 1, 1, 2, 3, 3, 3)
    # The last prompt token predicts every first choice token; it is listed once.
    assert pq.source_positions == (2, 3, 6, 7)
    assert pq.target_ids == (7, 8, 9, 10, 11, 12)
    assert [pq.source_positions[s] for s in pq.target_source] == [2, 3, 2, 2, 6, 7]
    assert pq.target_choice == (0, 0, 1, 2, 2, 2)
    assert pq.num_tokens == (2, 1, 3)
    assert pq.length == 9


def test_each_target_is_predicted_by_the_previous_token_of_its_own_sequence() -> None:
    rng = random.Random(3)
    for _ in range(50):
        prompt = [rng.randrange(100) for _ in range(rng.randint(1, 20))]
        choices = [[rng.randrange(100) for _ in range(rng.randint(1, 6))] for _ in range(rng.randint(1, 5))]
        pq = pack_question(prompt, choices)
        per_choice: dict[int, list[int]] = {}
        for src, tok, ch in zip(pq.target_source, pq.target_ids, pq.target_choice):
            pos = pq.source_positions[src]
            seq = prompt + choices[ch]
            k = len(per_choice.setdefault(ch, []))
            # The source token sits at sequence position len(prompt)-1+k of prompt+choice alone.
            assert pq.position_ids[pos] == len(prompt) - 1 + k
            assert pq.input_ids[pos] == seq[len(prompt) - 1 + k]
            assert tok == seq[len(prompt) + k]
            per_choice[ch].append(tok)
        assert [per_choice[i] for i in range(len(choices))] == choices


@pytest.mark.parametrize(
    "prompt,choices,message",
    [([], [[1]], "prompt has no tokens"), ([1], [], "no choices"), ([1], [[2], []], "choice 1 has no tokens")],
)
def test_pack_question_rejects_degenerate_input(prompt, choices, message) -> None:
    with pytest.raises(ValueError, match=message):
        pack_question(prompt, choices)


def test_max_position_needed_uses_longest_choice_not_row_length() -> None:
    assert max_position_needed(10, [3, 7, 2]) == 17


def test_plan_batches_respects_budget_and_covers_every_row() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(5, 200) for _ in range(300)]
    batches = plan_batches(lengths, 1000)
    assert sorted(i for b in batches for i in b) == list(range(300))
    for b in batches:
        assert len(b) * max(lengths[i] for i in b) <= 1000
    # Length bucketing: batches hold ascending, non-overlapping length ranges.
    ranges = [(min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in batches]
    assert all(hi <= nxt_lo for (_, hi), (nxt_lo, _) in zip(ranges, ranges[1:]))


def test_plan_batches_oversized_row_gets_its_own_batch() -> None:
    assert plan_batches([50, 5000, 40], 100) == [[2, 0], [1]]
    assert plan_batches([3, 3, 3], 1) == [[0], [1], [2]]
    assert plan_batches([], 10) == []
    with pytest.raises(ValueError):
        plan_batches([1], 0)


# The mask rule and its tensor form are tested on trees in test_packing.py
# (test_attends_rule, test_tree_mask_tensor_matches_rule).


def _row_length(prompts: list[list[int]], choice_tokens: list[int], group: list[int]) -> int:
    return pack_group([prompts[i] for i in group], [[[0] * choice_tokens[i]] for i in group]).length


def test_group_questions_shares_long_prefixes_only() -> None:
    system = list(range(100, 120))  # a 20-token header every prompt starts with
    prompts = [system + [1, 2, 3], [7, 8], system + [1, 2], system + [5], [7, 9], system + [1, 2, 3]]
    groups = group_questions(prompts, [3] * 6, min_shared_tokens=16, max_row_tokens=1000)
    # Sorted by prompt ids; [7, 8] and [7, 9] share 1 token only, below the minimum.
    assert groups == [[1], [4], [2, 0, 5, 3]]
    assert group_questions(prompts, [3] * 6, min_shared_tokens=21, max_row_tokens=1000) == [
        [1], [4], [2, 0, 5], [3]
    ]


def test_group_questions_row_length_prediction_is_exact_and_within_budget() -> None:
    rng = random.Random(7)
    stems = [[rng.randrange(50) for _ in range(rng.randint(16, 40))] for _ in range(4)]
    prompts = [rng.choice(stems) + [rng.randrange(3) for _ in range(rng.randint(0, 30))] for _ in range(200)]
    choice_tokens = [rng.randint(1, 20) for _ in prompts]
    for budget in (60, 300, 5000):
        groups = group_questions(prompts, choice_tokens, min_shared_tokens=16, max_row_tokens=budget)
        assert sorted(i for g in groups for i in g) == list(range(200))
        for g in groups:
            length = _row_length(prompts, choice_tokens, g)
            alone = len(prompts[g[0]]) + choice_tokens[g[0]]
            assert length <= budget or (len(g) == 1 and length == alone)
            shared = min(common_prefix_length(prompts[g[0]], prompts[i]) for i in g)
            assert len(g) == 1 or shared >= 16
        # Sorting by prompt ids, then greedy: groups are consecutive in sorted order.
        order = sorted(range(200), key=lambda i: (tuple(prompts[i]), i))
        assert [i for g in groups for i in g] == order
    assert len(group_questions(prompts, choice_tokens, min_shared_tokens=16, max_row_tokens=5000)) <= 4


def test_group_questions_edge_cases() -> None:
    assert group_questions([], [], min_shared_tokens=1, max_row_tokens=10) == []
    assert group_questions([[1] * 50], [2], min_shared_tokens=1, max_row_tokens=10) == [[0]]
    # Identical prompts cost only their choices once the first is in.
    assert group_questions([[1] * 8] * 3, [2] * 3, min_shared_tokens=8, max_row_tokens=14) == [[0, 1, 2]]
    assert group_questions([[1] * 8] * 3, [2] * 3, min_shared_tokens=8, max_row_tokens=13) == [[0, 1], [2]]
    with pytest.raises(ValueError):
        group_questions([[1]], [1], min_shared_tokens=0, max_row_tokens=10)


def test_joins_row_weighs_shared_tokens_against_attention_pairs() -> None:
    # Free attention: any shared token is worth it.
    assert joins_row(10_000, 100, 1, 0.0)
    # Row 400, question 150 tokens sharing 50: extra pairs 500**2 - 400**2 - 150**2 = 67_500.
    assert joins_row(400, 150, 50, 50 / 67_500)
    assert not joins_row(400, 150, 50, 50 / 67_500 * 1.01)


def test_group_questions_stops_growing_rows_when_attention_costs_more() -> None:
    header = list(range(100, 150))  # 50 shared tokens, then 100 own tokens per question
    prompts = [header + [i] * 60 for i in range(40)]
    free = group_questions(prompts, [40] * 40, min_shared_tokens=16, max_row_tokens=100_000)
    costly = group_questions(prompts, [40] * 40, min_shared_tokens=16, max_row_tokens=100_000, pair_cost=5e-4)
    assert len(free) == 1 and 1 < len(costly) < 40
    for g in costly:  # every join paid off under the cost model
        row = 150
        for i in g[1:]:
            assert joins_row(row, 150, 50, 5e-4)
            row += 100
