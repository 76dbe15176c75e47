"""The Ray runner: model actors stream the shards of each stage (answer, judge) through an engine into Parquet.

Ray is imported only in this subpackage, and only inside functions.
"""

from ray_bench.runner.driver import PlanReport, RunSummary, judge, plan, run

__all__ = ["PlanReport", "RunSummary", "judge", "plan", "run"]
