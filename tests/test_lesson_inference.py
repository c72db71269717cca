"""Submissions as they arrive: the lesson found when metadata and the ``NN_`` prefix are gone.

Colab rewrites notebook metadata and saves ``Copy of 03_dropout.ipynb``; Jupyter saves
``03_dropout (1).ipynb``; LMS downloads name files ``<learner>_<id>_03_dropout.ipynb``.
The grader looks for the lesson in the file name, then in the Colab badge or setup cell, then
in the exercise names the cells define, and says in the feedback which rule it used.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import course
from helpers.grading.notebooks import infer_lesson, lesson_in_name
from helpers.grading.runner import Options, prepare

sys.path.insert(0, str(Path(__file__).parent / "submissions"))
from builders import colab, dumps, fill, learner_copy, solution_sources, strip_cells  # noqa: E402


@pytest.mark.parametrize("name, lesson", [
    ("Copy of 03_dropout.ipynb", "03"),
    ("03_dropout (1).ipynb", "03"),
    ("alice_1234567_03_dropout.ipynb", "03"),
    ("bob_20240101_late_03_dropout (2).ipynb", "03"),
    ("Copy of Copy of 05_label_smoothing.ipynb", "05"),
    ("carol_88_07_something.ipynb", "07"),
    ("dave_1203_notes.ipynb", None),          # digits of an id are not a lesson
    ("Copy of 01_overfitting and 03_dropout.ipynb", None),  # two lessons: no guess
    ("homework.ipynb", None),
])
def test_lesson_in_file_name(name, lesson):
    assert lesson_in_name(name) == lesson


def _colab(lesson, keep=lambda c: True):
    nb = colab(fill(learner_copy(lesson), solution_sources(lesson)))
    return strip_cells(nb, keep)


def test_rules_in_order():
    nb = _colab("03")  # Colab: no metadata anywhere, the badge and setup cells kept
    lesson, rule = infer_lesson(nb, "Copy of 03_dropout.ipynb")
    assert lesson == "03" and "file name" in rule
    lesson, rule = infer_lesson(nb, "submission.ipynb")
    assert lesson == "03" and "Colab badge or setup cell" in rule
    # badge and setup cell deleted, a neutral name: the exercise names decide
    bare = strip_cells(nb, lambda c: "colab.research.google.com" not in c.source
                       and "google.colab" not in c.source)
    lesson, rule = infer_lesson(bare, "submission.ipynb")
    assert lesson == "03" and "exercises" in rule and "`dropout_forward`" in rule
    # Colab's own record of the file name
    bare.metadata["colab"] = {"name": "Copy of 03_dropout.ipynb"}
    assert infer_lesson(bare, "download.ipynb")[0] == "03"
    # nothing to go on
    empty = strip_cells(nb, lambda c: c.cell_type == "markdown" and "colab" not in c.source)
    empty.cells.append(__import__("nbformat").v4.new_code_cell("print('hello')"))
    assert infer_lesson(empty, "notes.ipynb") == (None, "")


def test_prepare_notes_the_rule(tmp_path):
    nb = _colab("01")
    for name, words in [("Copy of 01_overfitting.ipynb", "file name"),
                        ("alice_42_01_overfitting.ipynb", "file name"),
                        ("submission.ipynb", "Colab badge")]:
        job = prepare(name, tmp_path / name, dumps(nb), {}, Options())
        assert job.result.lesson == "01", (name, job.result.rows)
        assert any(words in n and "lesson 01" in n for n in job.result.notes), job.result.notes
        assert job.ref is not None
    # a broken file is still tied to the lesson its name gives
    job = prepare("x", tmp_path / "Copy of 03_dropout.ipynb", b"{broken", {}, Options())
    assert job.result.lesson == "03" and {r.exercise for r in job.result.rows} != {"-"}


@pytest.mark.slow
def test_colab_copy_is_graded(tmp_path):
    """End to end: a Colab copy without metadata, named as Colab names it, gets its score."""
    nb = _colab("01")
    path = tmp_path / "Copy of 01_overfitting.ipynb"
    path.write_bytes(dumps(nb))
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "helpers.grade", str(path), "--out", str(out), "-q"],
                       capture_output=True, text=True, cwd=course.ROOT, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {r["lesson"] for r in rows} == {"01"}
    assert [r["status"] for r in rows][:3] == ["passed"] * 3, rows
    text = next((out / "feedback").glob("*.md")).read_text()
    assert "file name names lesson 01" in text
