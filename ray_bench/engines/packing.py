"""Tree packing of closed questions for exact choice scoring (pure Python, no torch).

Scoring a choice needs log p(choice | prompt) as if ``prompt + choice`` were run alone.
Many such sequences share leading tokens: the choices of one question share its whole
prompt, and questions built from one template or one context share a prompt prefix.
Every shared token is computed once by laying the sequences out as a *prefix tree*:

* a node is a run of tokens; its first token continues the sequence of its parent,
  so its position ids start where the parent's end (each token gets exactly the
  position it has in the naive sequence);
* a token sees every token of its ancestors and, causally, the earlier tokens of its
  own node - exactly the tokens that precede it in each naive sequence through it;
* choices are leaves; a question's prompt ends at some inner node (or at a root).

One question alone is the 2-level tree ``prompt -> choices``; a group of questions
that share a prefix becomes ``shared prefix -> rest of each prompt -> choices``, with
deeper branches when sub-groups share more (a trie of the group's prompts, compacted).

Nodes are laid out in pre-order, so every node's subtree fills one contiguous range of
the row. "Key ``k``'s node is an ancestor of (or is) query ``q``'s node" is then simply
"``q`` lies before the end of ``k``'s subtree", which is what :attr:`PackedRow.visible_until`
records per token; the attention mask is ``k <= q < visible_until[k]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: Segment id of padding tokens; padding attends only to padding, never the reverse.
PAD_SEGMENT = -1


@dataclass(frozen=True)
class TreeNode:
    """One node of a packed prefix tree.

    Attributes:
        parent: Index of the parent node, ``-1`` for a root.
        tokens: The node's token ids (at least one).
    """

    parent: int
    tokens: tuple[int, ...]


@dataclass(frozen=True)
class TreeLayout:
    """Per-token arrays of a prefix tree laid out as one row.

    Attributes:
        input_ids: Token ids, nodes in pre-order.
        position_ids: Position of each token in its naive sequence.
        segment_ids: Index of each token's node.
        visible_until: Per token, the end (exclusive) of its node's subtree in the row:
            the tokens that may attend to it are ``q`` with ``k <= q < visible_until[k]``.
        node_start: Row position of each node's first token.
    """

    input_ids: tuple[int, ...]
    position_ids: tuple[int, ...]
    segment_ids: tuple[int, ...]
    visible_until: tuple[int, ...]
    node_start: tuple[int, ...]


def layout_tree(nodes: Sequence[TreeNode]) -> TreeLayout:
    """Lay out ``nodes`` (in pre-order) as one row.

    Raises:
        ValueError: a node is empty or the nodes are not in pre-order (a node's parent
            must be the previous node or one of its ancestors).
    """
    path: list[int] = []
    ids: list[int] = []
    positions: list[int] = []
    segments: list[int] = []
    node_start: list[int] = []
    next_position: list[int] = []
    for i, node in enumerate(nodes):
        if not node.tokens:
            raise ValueError(f"tree node {i} has no tokens")
        # Pre-order: the parent is on the path from the root to the previous node.
        while path and path[-1] != node.parent:
            path.pop()
        if node.parent != -1 and not path:
            raise ValueError(f"tree node {i} is not in pre-order (parent {node.parent})")
        path.append(i)
        first = next_position[node.parent] if node.parent != -1 else 0
        node_start.append(len(ids))
        next_position.append(first + len(node.tokens))
        ids.extend(int(t) for t in node.tokens)
        positions.extend(range(first, first + len(node.tokens)))
        segments.extend([i] * len(node.tokens))
    subtree_end = [node_start[i] + len(n.tokens) for i, n in enumerate(nodes)]
    for i in range(len(nodes) - 1, -1, -1):  # children come after parents: fold upwards
        parent = nodes[i].parent
        if parent != -1:
            subtree_end[parent] = max(subtree_end[parent], subtree_end[i])
    return TreeLayout(
        input_ids=tuple(ids),
        position_ids=tuple(positions),
        segment_ids=tuple(segments),
        visible_until=tuple(subtree_end[s] for s in segments),
        node_start=tuple(node_start),
    )


@dataclass(frozen=True)
class PackedRow:
    """Questions packed into one row, with what is needed to score their choices.

    Choices are numbered question-major in the order the questions were given
    (``choices_per_question`` says how many each has).

    Attributes:
        input_ids: The row's token ids (:func:`layout_tree`).
        position_ids: Per token, its position in its naive sequence.
        segment_ids: Per token, its tree node.
        visible_until: Per token, the end of its node's subtree (the attention rule).
        parents: Per node, its parent (``-1`` for a root).
        source_positions: Row positions whose logits are needed, without repeats.
        target_source: Per scored token, the index into ``source_positions`` predicting it.
        target_ids: Per scored token, its token id.
        target_choice: Per scored token, the index of its choice in the row.
        num_tokens: Per choice, how many tokens are scored.
        choices_per_question: Per question, how many choices it has.
    """

    input_ids: tuple[int, ...]
    position_ids: tuple[int, ...]
    segment_ids: tuple[int, ...]
    visible_until: tuple[int, ...]
    parents: tuple[int, ...]
    source_positions: tuple[int, ...]
    target_source: tuple[int, ...]
    target_ids: tuple[int, ...]
    target_choice: tuple[int, ...]
    num_tokens: tuple[int, ...]
    choices_per_question: tuple[int, ...]

    @property
    def length(self) -> int:
        """Tokens in the packed row."""
        return len(self.input_ids)


def validate_question(prompt_ids: Sequence[int], choice_ids: Sequence[Sequence[int]]) -> None:
    """Reject questions that cannot be scored.

    Raises:
        ValueError: the prompt is empty, there is no choice, or a choice has no tokens.
    """
    if not prompt_ids:
        raise ValueError("the rendered prompt has no tokens")
    if not choice_ids:
        raise ValueError("the question has no choices")
    for i, ids in enumerate(choice_ids):
        if not ids:
            raise ValueError(f"choice {i} has no tokens after tokenization (empty choice?)")


def pack_question(prompt_ids: Sequence[int], choice_ids: Sequence[Sequence[int]]) -> PackedRow:
    """Lay out one question as the 2-level tree ``prompt -> choices``.

    Raises:
        ValueError: see :func:`validate_question`.
    """
    return pack_group([prompt_ids], [choice_ids])


def pack_group(prompts: Sequence[Sequence[int]], choices: Sequence[Sequence[Sequence[int]]]) -> PackedRow:
    """Pack questions into one row, computing every prompt prefix they share once.

    Args:
        prompts: Prompt ids per question.
        choices: Per question, the ids of each choice.

    Raises:
        ValueError: a question fails :func:`validate_question`, or no question is given.
    """
    if not prompts or len(prompts) != len(choices):
        raise ValueError("pack_group needs one list of choices per prompt, and at least one question")
    for p, c in zip(prompts, choices):
        validate_question(p, c)
    builder = _TreeBuilder(prompts, choices)
    builder.build()
    return builder.finish()


class _TreeBuilder:
    """Builds the compacted trie of a group's prompts, with the choices as leaves.

    Prompts are sorted, so every sub-tree is a contiguous range of the sorted order, and
    the prefix a range shares is the smallest longest-common-prefix of neighbours in it.
    """

    def __init__(self, prompts: Sequence[Sequence[int]], choices: Sequence[Sequence[Sequence[int]]]) -> None:
        self.prompts = [tuple(int(t) for t in p) for p in prompts]
        self.choices = [[tuple(int(t) for t in c) for c in cs] for cs in choices]
        self.order = sorted(range(len(self.prompts)), key=lambda i: (self.prompts[i], i))
        #: lcp[k]: shared prefix length of the sorted prompts k-1 and k (lcp[0] unused).
        self.lcp = [0] + [
            common_prefix_length(self.prompts[a], self.prompts[b]) for a, b in zip(self.order, self.order[1:])
        ]
        self.nodes: list[TreeNode] = []
        #: Per node, the (question, choice) it holds when it is a choice leaf.
        self.leaf_of: dict[int, tuple[int, int]] = {}
        #: Per question, the node holding its prompt's last token.
        self.prompt_end: dict[int, int] = {}

    def build(self) -> None:
        """Add every node in pre-order.

        Iterative (an explicit stack) because a chain of prompts that each extend the
        previous one is as deep as the group is large.
        """
        stack: list[tuple[int, int, int, int]] = [(0, len(self.order), 0, -1)]  # lo, hi, depth, parent
        while stack:
            lo, hi, depth, parent = stack.pop()
            node, end, branches = self._expand(lo, hi, depth, parent)
            for start, stop in reversed(branches):  # LIFO: the first branch is laid out first
                stack.append((start, stop, end, node))

    def _expand(self, lo: int, hi: int, depth: int, parent: int) -> tuple[int, int, list[tuple[int, int]]]:
        """Add the node sorted prompts ``lo..hi-1`` share after ``depth``, and the choices of those ending there.

        Returns:
            The node (``parent`` when nothing is shared), where it ends in the prompts,
            and the sorted sub-ranges that continue past it, one per next token.
        """
        first = self.prompts[self.order[lo]]
        end = min(self.lcp[lo + 1 : hi]) if hi - lo > 1 else len(first)
        node = parent
        if end > depth:  # only a root level can have nothing in common
            node = self._add(parent, first[depth:end])
        i = lo
        # Sorted, so prompts that end here (possibly inside the others' prefix) come first;
        # their choices hang off this node and see exactly the prompt.
        while i < hi and len(self.prompts[self.order[i]]) == end:
            q = self.order[i]
            self.prompt_end[q] = node
            for c, ids in enumerate(self.choices[q]):
                self.leaf_of[self._add(node, ids)] = (q, c)
            i += 1
        starts = [i] + [k for k in range(i + 1, hi) if self.lcp[k] == end]
        return node, end, list(zip(starts, starts[1:] + [hi])) if i < hi else []

    def _add(self, parent: int, tokens: tuple[int, ...]) -> int:
        self.nodes.append(TreeNode(parent, tokens))
        return len(self.nodes) - 1

    def finish(self) -> PackedRow:
        """Lay the tree out and list, per choice token, the row position that predicts it."""
        layout = layout_tree(self.nodes)
        offsets = [0]
        for cs in self.choices:
            offsets.append(offsets[-1] + len(cs))
        per_choice: dict[int, list[tuple[int, int]]] = {}  # choice -> [(source pos, token)]
        for leaf, (q, c) in self.leaf_of.items():
            prompt_node = self.prompt_end[q]
            last_prompt = layout.node_start[prompt_node] + len(self.nodes[prompt_node].tokens) - 1
            start = layout.node_start[leaf]
            ids = self.nodes[leaf].tokens
            # Token t of the choice is predicted by the token before it in the naive sequence.
            per_choice[offsets[q] + c] = [(last_prompt if t == 0 else start + t - 1, tok) for t, tok in enumerate(ids)]
        sources: dict[int, int] = {}
        target_source: list[int] = []
        target_ids: list[int] = []
        target_choice: list[int] = []
        for choice in range(offsets[-1]):
            for pos, tok in per_choice[choice]:
                target_source.append(sources.setdefault(pos, len(sources)))
                target_ids.append(tok)
                target_choice.append(choice)
        return PackedRow(
            input_ids=layout.input_ids,
            position_ids=layout.position_ids,
            segment_ids=layout.segment_ids,
            visible_until=layout.visible_until,
            parents=tuple(n.parent for n in self.nodes),
            source_positions=tuple(sources),
            target_source=tuple(target_source),
            target_ids=tuple(target_ids),
            target_choice=tuple(target_choice),
            num_tokens=tuple(len(c) for cs in self.choices for c in cs),
            choices_per_question=tuple(len(cs) for cs in self.choices),
        )


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def attends(parents: Sequence[int], segment_q: int, segment_k: int, pos_q: int, pos_k: int) -> bool:
    """Reference rule of the tree mask for one (query, key) pair of row positions.

    A token sees earlier-or-same row positions of its own node or of an ancestor node;
    padding sees only padding. Walks the ancestry explicitly; exists to unit-test the
    ``visible_until`` form used by the engine.

    Args:
        parents: Per node, its parent (``-1`` for a root).
        segment_q: Node of the query token (:data:`PAD_SEGMENT` for padding).
        segment_k: Node of the key token.
        pos_q: Row position of the query.
        pos_k: Row position of the key.
    """
    if pos_k > pos_q:
        return False
    if segment_q == PAD_SEGMENT or segment_k == PAD_SEGMENT:
        return segment_q == segment_k
    node = segment_q
    while node != -1:
        if node == segment_k:
            return True
        node = parents[node]
    return False
