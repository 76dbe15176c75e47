"""Tests of ray_bench.analysis.text: word counts, longest common prefix and ROUGE-L."""

from __future__ import annotations

import random

import polars as pl
import pytest

from ray_bench.analysis import text
from ray_bench.analysis.text import TEXT_CHANGE_COLUMNS, rouge_l, text_change_columns
from ray_bench.errors import AnalysisError


def _frame(pairs: list[tuple[str | None, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": list(range(len(pairs))),
            "response_base": [b for b, _ in pairs],
            "response_variant": [v for _, v in pairs],
        },
        schema={"id": pl.Int64, "response_base": pl.String, "response_variant": pl.String},
    )


def _one(base: str | None, variant: str | None) -> dict:
    return text_change_columns(_frame([(base, variant)])).row(0, named=True)


def _naive_lcs(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence, by the textbook dynamic programme."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a, 1):
        for j, y in enumerate(b, 1):
            table[i][j] = table[i - 1][j - 1] + 1 if x == y else max(table[i - 1][j], table[i][j - 1])
    return table[-1][-1]


def _naive_lcp(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class _CountingLcs:
    """Wraps the LCS kernel and records the (target, prediction) token pairs it scored."""

    def __init__(self, real) -> None:
        self.calls: list[tuple[str, str]] = []
        self._real = real

    def __call__(self, a, b):
        self.calls.append((" ".join(a), " ".join(b)))
        return self._real(a, b)


@pytest.fixture
def counting(monkeypatch) -> _CountingLcs:
    fake = _CountingLcs(text.lcs_length)
    monkeypatch.setattr(text, "lcs_length", fake)
    return fake


def test_rouge_l_equals_the_rouge_score_package_on_random_texts():
    """The fast LCS gives rouge-score's own numbers (stemming, case, punctuation included)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    vocab = ["running", "runs", "ran", "The", "cat", "cats", "sat,", "on", "mat.", "quickly", "a", "is", "42", "Walking"]
    rng = random.Random(7)
    for _ in range(300):
        x = " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 40)))
        y = " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 40)))
        ref = scorer.score(x, y)["rougeL"]
        got = rouge_l(x, y)
        assert got == (pytest.approx(ref.precision), pytest.approx(ref.recall), pytest.approx(ref.fmeasure)), (x, y)


def test_worked_example_cat_on_the_mat():
    # Words differ at position 3, so the prefix is "the cat"; the LCS drops only
    # sat/lay ("sat" and "lay" are short, the stemmer leaves them and the rest alone).
    row = _one("the cat sat on the mat", "the cat lay on the mat")
    assert row["word_count_base"] == 6.0
    assert row["word_count_variant"] == 6.0
    assert row["word_count_change"] == 0.0
    assert row["lcp_words"] == 2.0
    assert row["lcp_prop"] == pytest.approx(2 / 6)
    assert row["rougeL_precision"] == pytest.approx(5 / 6)
    assert row["rougeL_recall"] == pytest.approx(5 / 6)
    assert row["rougeL_f"] == pytest.approx(5 / 6)


def test_different_lengths_lcp_prop_uses_longer_and_recall_is_wrt_base():
    # base 2 words, variant 4: prefix 2, LCS 2 -> P = 2/4, R = 2/2, F = 2PR/(P+R) = 2/3.
    row = _one("a b", "a b c d")
    assert row["word_count_change"] == 2.0
    assert row["lcp_words"] == 2.0
    assert row["lcp_prop"] == pytest.approx(0.5)
    assert row["rougeL_precision"] == pytest.approx(0.5)
    assert row["rougeL_recall"] == pytest.approx(1.0)
    assert row["rougeL_f"] == pytest.approx(2 / 3)
    # Swapped: the base is now the longer answer.
    row = _one("a b c d", "a b")
    assert row["word_count_change"] == -2.0
    assert row["lcp_prop"] == pytest.approx(0.5)
    assert row["rougeL_precision"] == pytest.approx(1.0)
    assert row["rougeL_recall"] == pytest.approx(0.5)


def test_stemming_is_applied_in_rouge_but_not_in_prefix():
    # "running"/"runs" both stem to "run": ROUGE-L sees identical token sequences.
    row = _one("she runs fast", "she running fast")
    assert row["lcp_words"] == 1.0
    assert row["rougeL_f"] == pytest.approx(1.0)


def test_prefix_is_case_and_punctuation_sensitive_rouge_is_not():
    row = _one("The cat.", "the cat")
    assert row["lcp_words"] == 0.0
    assert row["lcp_prop"] == 0.0
    assert row["rougeL_f"] == pytest.approx(1.0)


def test_identical_texts_score_one_without_calling_the_scorer(counting):
    # Non-ASCII text has no rouge-score tokens; identical texts still score 1.0.
    pairs = [("the cat sat", "the cat sat"), ("日本語 です", "日本語 です")]
    out = text_change_columns(_frame(pairs))
    assert out["lcp_words"].to_list() == [3.0, 2.0]
    assert out["lcp_prop"].to_list() == [1.0, 1.0]
    for col in ("rougeL_precision", "rougeL_recall", "rougeL_f"):
        assert out[col].to_list() == [1.0, 1.0]
    assert counting.calls == []


def test_empty_strings(counting):
    out = text_change_columns(_frame([("", ""), ("  \n\t", ""), ("", "two words"), ("one", "   ")]))
    assert out["word_count_base"].to_list() == [0.0, 0.0, 0.0, 1.0]
    assert out["word_count_variant"].to_list() == [0.0, 0.0, 2.0, 0.0]
    assert out["word_count_change"].to_list() == [0.0, 0.0, 2.0, -1.0]
    assert out["lcp_words"].to_list() == [0.0, 0.0, 0.0, 0.0]
    assert out["lcp_prop"].to_list() == [1.0, 1.0, 0.0, 0.0]
    assert out["rougeL_f"].to_list() == [1.0, 1.0, 0.0, 0.0]
    assert out["rougeL_precision"].to_list() == [1.0, 1.0, 0.0, 0.0]
    assert out["rougeL_recall"].to_list() == [1.0, 1.0, 0.0, 0.0]
    assert counting.calls == []


def test_nulls_give_null_metrics_for_the_row():
    out = text_change_columns(_frame([(None, "a b"), ("a b c", None), (None, None), ("a", "a b")]))
    assert out["word_count_base"].to_list() == [None, 3.0, None, 1.0]
    assert out["word_count_variant"].to_list() == [2.0, None, None, 2.0]
    for col in ("word_count_change", "lcp_words", "lcp_prop", *text._ROUGE_COLUMNS):
        assert out[col].to_list()[:3] == [None, None, None], col
    assert out.row(3, named=True)["lcp_prop"] == pytest.approx(0.5)
    assert out.row(3, named=True)["rougeL_recall"] == pytest.approx(1.0)


def test_all_null_column_of_null_dtype():
    paired = pl.DataFrame({"response_base": [None, None], "response_variant": ["x", None]})
    out = text_change_columns(paired)
    assert out["lcp_words"].to_list() == [None, None]
    assert out["word_count_variant"].to_list() == [1.0, None]


def test_words_match_python_str_split_on_all_whitespace():
    spaces = [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x85",
              "\xa0", "\u1680", "\u2003", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000"]
    assert all(c.isspace() for c in spaces)
    rng = random.Random(7)
    alphabet = spaces + list("ab.é😀\u200b")  # U+200B (zero-width space) is not whitespace
    samples = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20))) for _ in range(200)]
    got = pl.DataFrame({"s": samples}).select(text.words(pl.col("s")))["s"].to_list()
    assert got == [s.split() for s in samples]


def test_columns_types_order_and_other_columns_kept():
    paired = _frame([("x y", "x z"), ("p", "q")]).with_columns(pl.lit(9.0).alias("lcp_words"))
    out = text_change_columns(paired)
    assert out["id"].to_list() == [0, 1]
    assert out["response_base"].to_list() == ["x y", "p"]
    assert out["lcp_words"].to_list() == [1.0, 0.0]  # the stale column is replaced
    for col in TEXT_CHANGE_COLUMNS:
        assert out.schema[col] == pl.Float64, col
    assert out.columns.count("lcp_words") == 1
    assert set(out.columns) == {"id", "response_base", "response_variant", *TEXT_CHANGE_COLUMNS}
    assert not any(c.startswith("__rb_") for c in out.columns)


def test_row_order_preserved_with_many_rows():
    rng = random.Random(3)
    tokens = ["aa", "bb", "cc"]
    pairs = [(" ".join(rng.choices(tokens, k=rng.randint(0, 4))),
              " ".join(rng.choices(tokens, k=rng.randint(0, 4)))) for _ in range(300)]
    out = text_change_columns(_frame(pairs))
    assert out["id"].to_list() == list(range(300))
    expected = [float(_naive_lcp(b.split(), v.split())) for b, v in pairs]
    assert out["lcp_words"].to_list() == expected


def test_custom_column_names():
    paired = pl.DataFrame({"a": ["one two"], "b": ["one three"]})
    out = text_change_columns(paired, base_col="a", variant_col="b")
    assert out["lcp_words"].to_list() == [1.0]
    assert out["rougeL_f"].to_list() == [pytest.approx(0.5)]


def test_empty_frame():
    out = text_change_columns(_frame([]))
    assert out.height == 0
    assert all(out.schema[c] == pl.Float64 for c in TEXT_CHANGE_COLUMNS)


def test_unique_pairs_are_scored_once(counting):
    pairs = [("a b c", "a c"), ("a b c", "a c"), ("a c", "a b c"), ("a b c", "a c"), ("x", "x")]
    out = text_change_columns(_frame(pairs))
    assert sorted(counting.calls) == [("a b c", "a c"), ("a c", "a b c")]
    assert out["rougeL_recall"].to_list() == pytest.approx([2 / 3, 2 / 3, 1.0, 2 / 3, 1.0])


def test_bad_columns_raise():
    with pytest.raises(AnalysisError, match="missing"):
        text_change_columns(pl.DataFrame({"response_base": ["a"]}))
    with pytest.raises(AnalysisError, match="not String"):
        text_change_columns(pl.DataFrame({"response_base": ["a"], "response_variant": [1]}))
    with pytest.raises(AnalysisError, match="both"):
        text_change_columns(_frame([("a", "b")]), base_col="response_base", variant_col="response_base")


def test_against_naive_lcs_and_prefix_for_random_sequences():
    # Two-letter lowercase tokens: rouge-score's tokenizer and the Porter stemmer
    # (which skips tokens of three letters or fewer) leave them unchanged.
    rng = random.Random(20240607)
    tokens = ["aa", "bb", "cc", "dd", "ee"]
    pairs = []
    for _ in range(50):
        base = rng.choices(tokens, k=rng.randint(1, 15))
        variant = base[: rng.randint(0, len(base))] + rng.choices(tokens, k=rng.randint(0, 12))
        pairs.append((base, variant or ["aa"]))
    out = text_change_columns(_frame([(" ".join(b), " ".join(v)) for b, v in pairs]))
    for row, (base, variant) in zip(out.iter_rows(named=True), pairs):
        lcs = _naive_lcs(base, variant)
        p, r = lcs / len(variant), lcs / len(base)
        f = 2 * p * r / (p + r) if lcs else 0.0
        assert row["rougeL_precision"] == pytest.approx(p)
        assert row["rougeL_recall"] == pytest.approx(r)
        assert row["rougeL_f"] == pytest.approx(f)
        lcp = _naive_lcp(base, variant)
        assert row["lcp_words"] == lcp
        assert row["lcp_prop"] == pytest.approx(lcp / max(len(base), len(variant)))
        assert row["word_count_change"] == len(variant) - len(base)


def test_rouge_l_helper_matches_scorer_direction():
    p, r, f = rouge_l("a b c d", "a b")
    assert (p, r) == (pytest.approx(1.0), pytest.approx(0.5))
    assert f == pytest.approx(2 / 3)
