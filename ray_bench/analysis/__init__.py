"""Analyses of result tables: pure Polars, no I/O and no Ray."""

from ray_bench.analysis.flips import ENTROPY_BINS, flip_table, normalized_entropy, pair_with_base

__all__ = ["ENTROPY_BINS", "flip_table", "normalized_entropy", "pair_with_base"]
