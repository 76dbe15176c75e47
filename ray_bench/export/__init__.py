"""Exports of an analysis (after ``analyze`` in the data flow; nothing here runs a model).

* :mod:`~ray_bench.export.review`: flagged cases as a Hugging Face dataset in Argilla v2's
  layout (:mod:`~ray_bench.export.layout`), for human review (``ray-bench export review``);
* :mod:`~ray_bench.export.preferences`: reviewed records, or BBQ's rule without review, as TRL
  preference data (``ray-bench export preferences``).

See docs/export.md.
"""
