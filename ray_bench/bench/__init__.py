"""Benchmarks of the engines (``ray-bench bench ...``); imported only by that command."""
