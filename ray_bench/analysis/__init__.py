"""Analyses of result tables: pure Polars (and NumPy for the tests), no I/O and no Ray.

The entry point is :func:`ray_bench.analysis.study.analyze_frames`; each table has its own
module (fields, flips, entropy, metrics, groups, text) and docs/analysis.md lists them all.
Submodules are imported on use so that ``import ray_bench.analysis`` stays light.
"""
