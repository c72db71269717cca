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


@pytest.mark.slow
def test_graded_with_report_the_page_agrees_with_the_gradebook(tmp_path):
    """The CLI with --report on honest, wrong and stub submissions of lesson 07 (one carrying
    two resolved predictions): every pass rate in the page is the gradebook's, and the
    predictions reach grades.csv and the page."""
    import shutil
    import subprocess
    import sys

    import nbformat

    from helpers import course
    from helpers.predict import RECORD_KEY

    subs = tmp_path / "subs"
    for who in ("ann", "ben", "cat"):
        (subs / who).mkdir(parents=True)
    honest = nbformat.read(course.SOLUTIONS / "07_early_stopping.ipynb", as_version=4)
    honest.cells.append(nbformat.v4.new_code_cell("resolve(...)", outputs=[
        nbformat.v4.new_output("display_data", data={"text/plain": "p7.1"}, metadata={
            RECORD_KEY: {"id": f"p7.{k}", "p": 0.8, "outcome": k == 1, "lesson": "07",
                         "statement": f"statement {k}", "made": True}}) for k in (1, 2)]))
    nbformat.write(honest, subs / "ann" / "07_early_stopping.ipynb")
    shutil.copy(course.EXERCISES / "07_early_stopping.ipynb", subs / "ben" / "07_early_stopping.ipynb")
    wrong = nbformat.read(course.SOLUTIONS / "07_early_stopping.ipynb", as_version=4)
    for c in wrong.cells:
        if c.get("metadata", {}).get("course", {}).get("exercise") == "ex7.2" and \
                c["metadata"]["course"].get("role") == "answer":
            c.source = ("import math\ndef cosine_lr(step, total_steps, lr_max, lr_min=0.0):\n"
                        "    return lr_min + (lr_max - lr_min) * (1 + math.cos(step / total_steps)) / 2\n")
    nbformat.write(wrong, subs / "cat" / "07_early_stopping.ipynb")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "helpers.grade", str(subs), "--out", str(out),
                           "--jobs", "2", "--report", "-q"], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    page = (out / classreport.REPORT_NAME).read_text()
    gb = list(csv.DictReader(open(out / "gradebook.csv")))
    table = re.search(r"<table id='pass-rates'>(.*?)</table>", page, re.S).group(1)
    for ex in sorted({r["exercise"] for r in gb}):
        mine = [r for r in gb if r["exercise"] == ex]
        passed = sum(r["status"] == "passed" for r in mine)
        row = re.search(rf"<tr><td>{re.escape(ex)}</td>(.*?)</tr>", table).group(1)
        nums = re.findall(r">(\d+)<", row)
        assert int(nums[0]) == len(mine) and int(nums[1]) == passed, (ex, row)
        assert f"{round(100 * passed / len(mine))} %" in row
    grades = {r["learner"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    # the saved solution resolves lesson 07's own predictions at an untouched 0.5: they are no
    # predictions made, so only ann's two appended records count (cat's copy carries none made)
    assert grades["ann"]["predictions_07"] == "2" and grades["ben"]["predictions_07"] == "0"
    assert grades["cat"]["predictions_07"] == "0"
    assert "2 predictions resolved" in page and "statement 2" in page
    text = re.sub(r"data:image/[A-Za-z0-9+/=;,]+", "", page)   # inline figures: base64 may hold any 3 letters
    for who in ("ann", "ben", "cat"):
        assert who not in text
    seed = gb[0]["seed"]
    assert seed and seed not in page
