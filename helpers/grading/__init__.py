"""The course's automatic grader (``python -m helpers.grade``); see :mod:`helpers.grade`.

- :mod:`helpers.grading.notebooks`: reading submissions, finding answers, assembling the
  notebook that runs (reference setup and check cells + the learner's answer cells).
- :mod:`helpers.grading.sandbox`: running it under nbval in an isolated process.
- :mod:`helpers.grading.plugin`: the pytest plugin that reports each cell's outputs.
- :mod:`helpers.grading.runner`: the batch, the re-judging of records, the rows.
- :mod:`helpers.grading.report`: ``gradebook.csv``, feedback files, the terminal summary.
"""

from helpers.grading.runner import STATUSES, Options, Result, Row, UsageError, grade

__all__ = ["STATUSES", "Options", "Result", "Row", "UsageError", "grade"]
