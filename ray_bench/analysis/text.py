"""Text change between a base model's and a variant's answers to the same open prompts.

Measures follow the reference benchmark (notes 4.3, "Text-change measures"):

* word counts of both answers and their change (variant minus base);
* the longest common prefix in words, as a count and as a share of the longer answer;
* ROUGE-L precision, recall and F1 with Porter stemming, base answer as the target.

Words are what :meth:`str.split` (no argument) returns: maximal runs of non-whitespace
characters. Word counts and prefixes are computed with Polars expressions; ROUGE-L uses
rouge-score's tokenizer and Porter stemmer (cached per text and per word) and its formulas,
over a bit-parallel LCS, once per distinct (base, variant) text pair (equal to
``rouge_score.rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)``, tested).

Deviation from the reference: the reference reports ROUGE-Lsum (summary-level LCS over
newline-separated sentences); this module reports ROUGE-L (one LCS over the whole text).
The two agree on single-line answers.
"""

from __future__ import annotations

from functools import lru_cache

import polars as pl

from ray_bench.errors import AnalysisError

#: Columns added by :func:`text_change_columns`, in order (all ``Float64``).
TEXT_CHANGE_COLUMNS: tuple[str, ...] = (
    "word_count_base",
    "word_count_variant",
    "word_count_change",
    "lcp_words",
    "lcp_prop",
    "rougeL_precision",
    "rougeL_recall",
    "rougeL_f",
)
_ROUGE_COLUMNS = ("rougeL_precision", "rougeL_recall", "rougeL_f")

# Python's str.split() whitespace is Unicode White_Space (the regex ``\s``) plus the
# information separators U+001C..U+001F.
_WORD_PATTERN = r"[^\s\x1c-\x1f]+"
_TMP = "__rb_text_"  # prefix of temporary column names


def words(text: pl.Expr) -> pl.Expr:
    """List of the words of a string expression, as :meth:`str.split` would return them.

    A null string gives a null list; an empty or all-whitespace string an empty list.
    """
    return text.str.extract_all(_WORD_PATTERN)


def text_change_columns(
    paired: pl.DataFrame,
    *,
    base_col: str = "response_base",
    variant_col: str = "response_variant",
) -> pl.DataFrame:
    """Return ``paired`` with the text-change columns added (all ``Float64``).

    Columns (existing columns of the same name are replaced):

    * ``word_count_base``, ``word_count_variant``: number of words (``str.split()``);
    * ``word_count_change``: ``word_count_variant - word_count_base``;
    * ``lcp_words``: number of leading words identical in both answers (case-sensitive);
    * ``lcp_prop``: ``lcp_words / max(word_count_base, word_count_variant)``, 1.0 when
      both answers have no words;
    * ``rougeL_precision``, ``rougeL_recall``, ``rougeL_f``: ROUGE-L from
      ``rouge_score.rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)`` with
      ``score(target=base, prediction=variant)``, so recall is with respect to the base
      answer. Identical texts score 1.0 and both-wordless answers 1.0; a wordless answer
      against one with words scores 0.0. rouge-score's tokenizer keeps only ASCII
      letters and digits (lowercased), so text without them scores 0.0.

    This is ROUGE-L (one LCS over the whole answer), not the ROUGE-Lsum of the
    reference benchmark (summary-level LCS over newline-separated sentences).

    Nulls: a null answer gives a null word count for that answer, and null
    ``word_count_change``, ``lcp_*`` and ``rougeL_*`` for the row.

    Raises:
        AnalysisError: a column is missing or is not a string column, or the two
            column names are the same.
    """
    _check_columns(paired, base_col, variant_col)
    base_words = words(pl.col(base_col).cast(pl.String))
    variant_words = words(pl.col(variant_col).cast(pl.String))
    counted = paired.with_columns(
        base_words.list.len().cast(pl.Float64).alias("word_count_base"),
        variant_words.list.len().cast(pl.Float64).alias("word_count_variant"),
    ).with_columns(
        (pl.col("word_count_variant") - pl.col("word_count_base")).alias("word_count_change"),
        _lcp_words(paired, base_words, variant_words).alias("lcp_words"),
    )
    longer = pl.max_horizontal("word_count_base", "word_count_variant")
    counted = counted.with_columns(
        pl.when(longer == 0).then(1.0).otherwise(pl.col("lcp_words") / longer).alias("lcp_prop")
    )
    scores = _rouge_l_table(paired, base_col, variant_col)
    return _attach_rouge(counted, scores, base_col, variant_col)


def _check_columns(frame: pl.DataFrame, base_col: str, variant_col: str) -> None:
    """Raise :class:`AnalysisError` unless both columns exist, differ and hold strings."""
    if base_col == variant_col:
        raise AnalysisError(
            f"base and variant response columns are both {base_col!r}",
            hint="Pass two different columns as base_col and variant_col.",
        )
    for col in (base_col, variant_col):
        if col not in frame.columns:
            raise AnalysisError(
                f"response column {col!r} is missing",
                hint=f"Columns in the table: {', '.join(frame.columns)}.",
            )
        dtype = frame.schema[col]
        if dtype not in (pl.String, pl.Null):
            raise AnalysisError(
                f"response column {col!r} has type {dtype}, not String",
                hint="Cast the responses to strings before computing text change.",
            )


def _lcp_words(frame: pl.DataFrame, base_words: pl.Expr, variant_words: pl.Expr) -> pl.Series:
    """Leading identical words per row of ``frame`` (Float64; null if a list is null).

    Both lists are cut to the shorter length, exploded side by side and compared; the
    prefix length is the sum of the running minimum of the per-position equality.
    """
    idx, a, b = f"{_TMP}idx", f"{_TMP}a", f"{_TMP}b"
    shorter = pl.min_horizontal(base_words.list.len(), variant_words.list.len())
    known = base_words.is_not_null() & variant_words.is_not_null()
    lists = frame.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias(idx),
        pl.when(known).then(base_words.list.head(shorter)).alias(a),
        pl.when(known).then(variant_words.list.head(shorter)).alias(b),
    )
    per_row = (
        lists.explode(a, b, empty_as_null=True, keep_nulls=True)
        .group_by(idx)
        .agg((pl.col(a) == pl.col(b)).cum_min().cast(pl.Float64).sum().alias("lcp"))
    )
    both = pl.col(a).is_not_null() & pl.col(b).is_not_null()
    return (
        lists.join(per_row, on=idx, how="left", maintain_order="left")
        .select(pl.when(both).then(pl.col("lcp").fill_null(0.0)).otherwise(None))
        .to_series()
        .cast(pl.Float64)
    )


class _CachedStemmer:
    """rouge-score's Porter stemmer with a cache: a study's answers reuse a small vocabulary."""

    def __init__(self) -> None:
        from nltk.stem import porter

        self.stem = lru_cache(maxsize=1 << 18)(porter.PorterStemmer("ORIGINAL_ALGORITHM").stem)


@lru_cache(maxsize=1)
def _stemmer() -> _CachedStemmer:
    return _CachedStemmer()


@lru_cache(maxsize=1 << 16)
def _tokens(text: str) -> tuple[str, ...]:
    """rouge-score's own tokenization (lowercase, alphanumeric, stems of words > 3 letters)."""
    from rouge_score import tokenize

    return tuple(tokenize.tokenize(text, _stemmer()))


def lcs_length(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """Length of the longest common subsequence of two token sequences.

    Bit-parallel (Allison & Dix 1986; Hyyro 2004): one big-integer update per token of ``b``
    instead of rouge-score's O(len(a) * len(b)) Python table; same value (tested against it).
    """
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for token in b:
        u = v & masks.get(token, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def rouge_l(base: str, variant: str) -> tuple[float, float, float]:
    """ROUGE-L ``(precision, recall, f)`` of ``variant`` against the target ``base``.

    Identical texts and two wordless texts give 1.0; one wordless text gives 0.0;
    otherwise rouge-score's tokens and its ROUGE-L formulas over a fast LCS.
    """
    if base == variant:
        return (1.0, 1.0, 1.0)
    base_empty, variant_empty = not base.split(), not variant.split()
    if base_empty and variant_empty:
        return (1.0, 1.0, 1.0)
    if base_empty or variant_empty:
        return (0.0, 0.0, 0.0)
    target, prediction = _tokens(base), _tokens(variant)
    if not target or not prediction:  # rouge-score's rule when no token survives
        return (0.0, 0.0, 0.0)
    lcs = lcs_length(target, prediction)
    precision, recall = lcs / len(prediction), lcs / len(target)
    f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return (precision, recall, f)


def _rouge_l_table(frame: pl.DataFrame, base_col: str, variant_col: str) -> pl.DataFrame:
    """ROUGE-L scores of each distinct non-null (base, variant) pair of ``frame``."""
    a, b = f"{_TMP}a", f"{_TMP}b"
    pairs = (
        frame.select(pl.col(base_col).cast(pl.String).alias(a), pl.col(variant_col).cast(pl.String).alias(b))
        .drop_nulls()
        .unique()
    )
    scores = [rouge_l(x, y) for x, y in pairs.iter_rows()]
    columns = {name: [s[i] for s in scores] for i, name in enumerate(_ROUGE_COLUMNS)}
    return pairs.with_columns(
        pl.Series(name, values, dtype=pl.Float64) for name, values in columns.items()
    )


def _attach_rouge(
    counted: pl.DataFrame, scores: pl.DataFrame, base_col: str, variant_col: str
) -> pl.DataFrame:
    """Left-join the per-pair ROUGE-L scores onto ``counted`` by the two texts, in order."""
    a, b = f"{_TMP}a", f"{_TMP}b"
    keyed = counted.drop(_ROUGE_COLUMNS, strict=False).with_columns(
        pl.col(base_col).cast(pl.String).alias(a), pl.col(variant_col).cast(pl.String).alias(b)
    )
    joined = keyed.join(scores, on=[a, b], how="left", maintain_order="left").drop(a, b)
    ordered = [c for c in counted.columns if c not in _ROUGE_COLUMNS] + list(_ROUGE_COLUMNS)
    return joined.select(ordered)
