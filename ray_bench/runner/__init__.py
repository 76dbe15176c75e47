"""The Ray runner: model actors stream question shards through an engine into Parquet.

Ray is imported only in this subpackage, and only inside functions.
"""

from ray_bench.runner.driver import RunSummary, run

__all__ = ["RunSummary", "run"]
