"""Column names shared by every analysis table (see docs/analysis.md)."""

from __future__ import annotations

#: What identifies a dataset in the tables: BBQ's contexts are analyzed separately.
DATASET_KEYS = ["dataset", "subset", "context_condition"]
#: What identifies a (variant, base) comparison.
PAIR_KEYS = ["base", "variant", "role", "q_label"]
#: The ``axis`` value of rows aggregated over every social axis of a dataset.
ALL_AXES = "(all)"
#: Row key of a question within a model's results.
QUESTION_KEYS = ["subset", "question_id"]
