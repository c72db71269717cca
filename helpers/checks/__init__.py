"""Exercise checks. In a check cell: ``from helpers.checks import check; check("ex1.1")``.

See :mod:`helpers.checks.core` for the probe/judge design and the shared idioms; one module
per lesson (``lesson01.py`` ...) registers that lesson's exercises.

The registry is explicit: importing this package imports the checks module of every lesson
in :data:`helpers.course.LESSONS` (``LESSON_MODULES``), so a missing or broken lesson module
fails here, loudly, instead of showing up later as a lesson without exercises.
"""

from helpers import course
from helpers.checks.core import (RECORD_KEY, Exercise, Fail, Verdict, check, get, lesson_exercises,
                                 load_lesson, run)

LESSON_MODULES = {lesson: load_lesson(lesson) for lesson in course.LESSONS}

__all__ = ["LESSON_MODULES", "RECORD_KEY", "Exercise", "Fail", "Verdict", "check", "get",
           "lesson_exercises", "run"]
