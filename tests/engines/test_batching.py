"""Packing and batching helpers of prompt-once scoring."""

from __future__ import annotations

import random

import pytest

from ray_bench.engines.batching import PAD_SEGMENT, attends, max_position_needed, pack_question, plan_batches


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


def test_attends_rule() -> None:
    prompt, choice1, choice2 = 0, 1, 2
    assert attends(choice1, prompt, 5, 2)
    assert attends(choice1, choice1, 5, 4)
    assert not attends(choice2, choice1, 6, 4)
    assert not attends(choice1, prompt, 2, 5)  # never the future
    assert not attends(choice1, PAD_SEGMENT, 5, 4)
    assert not attends(PAD_SEGMENT, prompt, 9, 0)
    assert attends(PAD_SEGMENT, PAD_SEGMENT, 9, 9)


def test_block_mask_tensor_matches_rule() -> None:
    torch = pytest.importorskip("torch")
    from ray_bench.engines.hf_scoring import block_mask

    segments = [[0, 0, 1, 1, 2, 3, 3, PAD_SEGMENT], [0, 1, 2, PAD_SEGMENT, PAD_SEGMENT, PAD_SEGMENT, PAD_SEGMENT, PAD_SEGMENT]]
    mask = block_mask(torch.tensor(segments), as_bool=True, dtype=torch.float32)
    assert mask.shape == (2, 1, 8, 8) and mask.dtype == torch.bool
    for b, seg in enumerate(segments):
        for q in range(8):
            for k in range(8):
                assert bool(mask[b, 0, q, k]) == attends(seg[q], seg[k], q, k)
        assert mask[b, 0].any(dim=-1).all()  # no empty row, so no NaN from padding
    additive = block_mask(torch.tensor(segments), as_bool=False, dtype=torch.float32)
    assert torch.equal(additive == 0, mask)
