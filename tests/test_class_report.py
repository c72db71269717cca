"""The class report: its numbers agree with the gradebook it is computed from, it names no
learner and holds no seed, and its figures are inline (one self-contained file)."""

from __future__ import annotations

import csv
import re

import pytest

from helpers.checks import core
from helpers.grading import classreport

HINT = "12 values, degree 2: the columns are in reverse order. Column j must be x**j."
HINT_OTHER_SEED = "7 values, degree 3: the columns are in reverse order. Column j must be x**j."


def _write(tmp_path, gradebook, grades):
    with open(tmp_path / "gradebook.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["submission", "lesson", "exercise", "points", "max_points",
                                          "status", "message", "feedback", "seed", "learner"])
        w.writeheader()
        for r in gradebook:
            w.writerow({"feedback": "", "seed": "123456789", "learner": r["submission"].split("/")[0],
                        "points": 1 if r["status"] == "passed" else 0, "max_points": 1,
                        "lesson": "01", **r})
    with open(tmp_path / "grades.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["learner", "student_id", "total", "max_total", "percentage"])
        w.writeheader()
        for g in grades:
            w.writerow(g)


GRADEBOOK = [
    {"submission": "alice/01.ipynb", "exercise": "ex1.1", "status": "passed", "message": ""},
    {"submission": "alice/01.ipynb", "exercise": "ex1.2", "status": "failed", "message": HINT},
    {"submission": "bob/01.ipynb", "exercise": "ex1.1", "status": "failed", "message": HINT},
    {"submission": "bob/01.ipynb", "exercise": "ex1.2", "status": "error",
     "message": "your code raised LinAlgError: Singular matrix (in `f`, line 2)"},
    {"submission": "carol/01.ipynb", "exercise": "ex1.1", "status": "failed", "message": HINT_OTHER_SEED},
    {"submission": "carol/01.ipynb", "exercise": "ex1.2", "status": "failed",
     "message": core.helpers_message(["helpers.checks.lesson01._lstsq"])},
    {"submission": "dan/01.ipynb", "exercise": "ex1.1", "status": "missing", "message": "no answer"},
    {"submission": "dan/01.ipynb", "exercise": "ex1.2", "status": "timeout", "message": "cell timed out"},
]
GRADES = [{"learner": n, "student_id": "", "total": t, "max_total": 2, "percentage": 50 * t}
          for n, t in [("alice", 1), ("bob", 0), ("carol", 0), ("dan", 0)]]
PREDS = [[{"id": "p4.1", "p": 0.8, "outcome": False, "lesson": "04", "statement": "batch norm regularizes here"}],
         [{"id": "p4.1", "p": 0.9, "outcome": False, "lesson": "04", "statement": "batch norm regularizes here"},
          {"id": "p3.1", "p": 0.6, "outcome": True, "lesson": "03", "statement": "dropout helps"}],
         []]


def test_the_numbers_agree_with_the_gradebook(tmp_path):
    _write(tmp_path, GRADEBOOK, GRADES)
    gb = list(csv.DictReader(open(tmp_path / "gradebook.csv")))
    s = classreport.summarise(gb, list(csv.DictReader(open(tmp_path / "grades.csv"))), PREDS)
    for ex, d in s["exercises"].items():
        mine = [r for r in gb if r["exercise"] == ex]
        assert d["n"] == len(mine)
        assert d["status"].get("passed", 0) == sum(r["status"] == "passed" for r in mine)
        assert d["pass_rate"] == pytest.approx(sum(r["status"] == "passed" for r in mine) / len(mine))
    top = s["exercises"]["ex1.1"]["mistakes"][0]
    assert top["count"] == 2 and top["share"] == pytest.approx(0.5)    # one id at two seeds
    assert s["causes"] == {"error:LinAlgError": 1, "shortcut:helpers": 1, "timeout": 1}
    assert sorted(s["totals"]) == [0, 0, 0, 1] and s["max_total"] == 2
    st = {x["id"]: x for x in s["predictions"]["statements"]}
    assert st["p4.1"]["n"] == 2 and st["p4.1"]["believed"] == 1.0 and st["p4.1"]["true"] == 0.0
    assert s["predictions"]["statements"][0]["id"] == "p4.1"          # the most wrong first
    assert s["predictions"]["pooled"]["n"] == 3


def test_the_page_is_self_contained_and_anonymous(tmp_path):
    _write(tmp_path, GRADEBOOK, GRADES)
    path = classreport.write_class_report(tmp_path, PREDS)
    page = path.read_text()
    assert page.count("data:image/png;base64,") == 3
    assert not re.search(r"<(script|link|iframe)\b", page) and "src='http" not in page
    for name in ("alice", "bob", "carol", "dan", "123456789", "01.ipynb"):
        assert name not in page
    assert "100 % expected" in page and "batch norm regularizes here" in page
