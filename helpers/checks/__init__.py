"""Exercise checks. In a check cell: ``from helpers.checks import check; check("ex1.1", fn)``.

See :mod:`helpers.checks.core` for the probe/judge design; one module per lesson
(``lesson01.py`` ...) registers that lesson's exercises.
"""

from helpers.checks.core import (RECORD_KEY, Exercise, Fail, Verdict, check, get,
                                 lesson_exercises, run)

__all__ = ["RECORD_KEY", "Exercise", "Fail", "Verdict", "check", "get", "lesson_exercises", "run"]
