"""The runner tests' hand-built question tables, shared with the stage tests."""

from tests.runner.conftest import make_questions, questions  # noqa: F401 - fixtures re-exported

__all__ = ["make_questions", "questions"]
