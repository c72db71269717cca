"""Build honest and hostile submissions from the course's own notebooks, in code.

Every builder takes the reference (``solutions/NN_*.ipynb``) and a learner copy
(``exercises/`` or ``notebooks/``) and returns a notebook or raw bytes; ``tests/test_grade.py``
writes them into a temporary folder and grades them as one batch.
"""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path

import nbformat

from helpers import course
from helpers.cells import exercise_id, role, solution_lines, without_markers

ROOT = course.ROOT


def _solution_answers(lesson: str, part) -> dict:
    """``part(source)`` of each answer cell of the lesson's solutions notebook, by exercise."""
    nb = read(ROOT / "solutions" / f"{course.LESSONS[lesson][0]}.ipynb")
    return {exercise_id(c): part(c.source) for c in nb.cells if role(c) == "answer"}


def solution_sources(lesson: str) -> dict[str, str]:
    """Each exercise's reference answer, marker lines removed (what a perfect learner writes)."""
    return _solution_answers(lesson, without_markers)


def solution_bodies(lesson: str) -> dict[str, list[str]]:
    """The lines between the solution markers (must never appear in feedback)."""
    return _solution_answers(lesson, solution_lines)


def read(path: Path):
    return nbformat.read(path, as_version=4)


def learner_copy(lesson: str, folder: str = "exercises"):
    return read(ROOT / folder / f"{course.LESSONS[lesson][0]}.ipynb")


def fill(nb, answers: dict[str, str], overrides: dict[str, str] | None = None):
    """A copy of ``nb`` with each answer cell's source replaced (overrides win)."""
    nb = copy.deepcopy(nb)
    overrides = overrides or {}
    for c in nb.cells:
        if role(c) == "answer":
            ex = exercise_id(c)
            if ex in overrides:
                c.source = overrides[ex]
            elif ex in answers:
                c.source = answers[ex]
    return nb


def colab(nb):
    """What Colab / copy-paste leaves: no cell metadata, new cell ids, no outputs."""
    nb = copy.deepcopy(nb)
    for c in nb.cells:
        c.metadata = {}
        c.id = uuid.uuid4().hex[:8]
        if c.cell_type == "code":
            c.outputs = []
            c.execution_count = None
    nb.metadata = {"colab": {"provenance": []}, "kernelspec": {"name": "python3",
                                                               "display_name": "Python 3"}}
    return nb


def strip_cells(nb, keep):
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if keep(c)]
    return nb


def v3_bytes(nb) -> bytes:
    """The notebook written as nbformat v3 (what very old Jupyter versions save)."""
    return nbformat.writes(copy.deepcopy(nb), version=3).encode()


def dumps(nb) -> bytes:
    return nbformat.writes(nb, version=4).encode()


EMPTY_NOTEBOOK = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode()
