"""The wide ``grades.csv`` an LMS imports: one row per learner, a column per exercise and lesson."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from helpers import course
from helpers.checks import lesson_exercises
from helpers.grading import report
from helpers.grading.runner import Result, Row, learner_of

sys.path.insert(0, str(Path(__file__).parent / "submissions"))


def _result(sub, learner, lesson, statuses):
    r = Result(submission=sub, path=Path(sub), lesson=lesson, learner=learner, seed=5)
    exs = lesson_exercises(lesson)
    for ex, st in zip(exs, statuses):
        r.rows.append(Row(sub, lesson, ex.id, ex.points if st == "passed" else 0, ex.points, st, ""))
    return r


def _with_predictions(r, n):
    r.predictions = [{"id": f"p1.{k + 1}", "p": 0.5, "outcome": True} for k in range(n)]
    return r


def test_learner_is_first_folder_else_stem(tmp_path):
    (tmp_path / "sub" / "alice" / "deep").mkdir(parents=True)
    assert learner_of(str(tmp_path / "sub"), tmp_path / "sub" / "alice" / "deep" / "03_dropout.ipynb") == "alice"
    assert learner_of(str(tmp_path / "sub"), tmp_path / "sub" / "bob_03_dropout.ipynb") == "bob_03_dropout"
    assert learner_of(str(tmp_path / "sub" / "x.ipynb"), tmp_path / "sub" / "x.ipynb") == "x"


def test_table_one_row_per_learner_several_lessons():
    n1, n3 = len(lesson_exercises("01")), len(lesson_exercises("03"))
    results = [
        _with_predictions(_result("s/alice/01.ipynb", "alice", "01", ["passed"] * n1), 2),
        _result("s/alice/03.ipynb", "alice", "03", ["passed"] + ["failed"] * (n3 - 1)),
        _result("s/bob/01.ipynb", "bob", "01", ["failed"] * n1),
        _result("s/bob/01 (1).ipynb", "bob", "01", ["passed", "passed"] + ["failed"] * (n1 - 2)),
        Result(submission="s/eve/notes.ipynb", path=Path("x"), learner="eve",
               rows=[Row("s/eve/notes.ipynb", "", "-", 0, 0, "error", "unknown lesson")]),
    ]
    header, table = report.grades_table(results, {"carol": "C3", "alice": "A1"})
    ids1 = [e.id for e in lesson_exercises("01")]
    ids3 = [e.id for e in lesson_exercises("03")]
    assert header == (["learner", "student_id"] + ids1 + ids3 + ["lesson_01", "lesson_03", "total",
                                                                 "max_total", "percentage",
                                                                 "predictions_01", "predictions_03"])
    rows = {r[0]: dict(zip(header, r)) for r in table}
    assert list(rows) == ["carol", "alice", "bob", "eve"]  # roster order first, then as found
    assert rows["alice"]["predictions_01"] == 2 and rows["alice"]["predictions_03"] == 0
    mx = sum(e.points for e in lesson_exercises("01") + lesson_exercises("03"))
    a = rows["alice"]
    assert (a["student_id"], a["lesson_01"], a["lesson_03"], a["total"], a["max_total"]) == \
        ("A1", n1, 1, n1 + 1, mx)
    assert a["percentage"] == round(100 * (n1 + 1) / mx, 2)
    b = rows["bob"]  # the better of two submissions of one lesson counts
    assert (b["student_id"], b["lesson_01"], b["lesson_03"], b[ids1[1]]) == ("", 2, 0, 1)
    assert rows["carol"]["total"] == 0 and rows["carol"]["student_id"] == "C3"
    assert rows["eve"]["total"] == 0


def test_roster_formats(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("Name,Email,Student ID\nalice,a@x,17\n", encoding="utf-8")
    assert report.read_roster(p) == {"alice": "17"}  # a student id column wins over email
    p.write_text("learner,student_id\nalice,17\nbob,18\n", encoding="utf-8")
    assert report.read_roster(p) == {"alice": "17", "bob": "18"}
    p.write_text("alice,17\nbob,18\n", encoding="utf-8")
    assert report.read_roster(p) == {"alice": "17", "bob": "18"}


def test_cli_writes_grades_csv(tmp_path):
    """Stubs and broken files only: no kernel starts, so this is fast."""
    from builders import dumps, learner_copy

    sub = tmp_path / "submitted"
    (sub / "alice").mkdir(parents=True)
    (sub / "bob").mkdir()
    (sub / "alice" / "01_overfitting.ipynb").write_bytes(dumps(learner_copy("01")))
    (sub / "alice" / "03_dropout.ipynb").write_bytes(dumps(learner_copy("03")))
    (sub / "bob" / "01_overfitting.ipynb").write_bytes(b"{broken")
    (sub / "=cmd.ipynb").write_bytes(b"{broken")   # a learner-chosen name is not a formula
    roster = tmp_path / "roster.csv"
    roster.write_text("learner,student_id\nalice,1001\nbob,1002\ncarol,1003\n", encoding="utf-8")
    out = tmp_path / "out"
    # two lessons: named with --lessons (by default, lesson 03, which one learner of two handed
    # in, would not be part of the assignment)
    p = subprocess.run([sys.executable, "-m", "helpers.grade", str(sub), "--out", str(out), "-q",
                        "--roster", str(roster), "--seed", "3", "--lessons", "01,03"],
                       capture_output=True, text=True, cwd=course.ROOT, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "not in the roster" in p.stderr and "=cmd" in p.stderr
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["learner"] for r in rows] == ["alice", "bob", "carol", "'=cmd"]
    assert [r["student_id"] for r in rows] == ["1001", "1002", "1003", ""]
    assert all(r["total"] == "0" and r["percentage"] == "0" for r in rows)
    assert "lesson_01" in rows[0] and "lesson_03" in rows[0]
    bad = subprocess.run([sys.executable, "-m", "helpers.grade", str(sub), "--roster",
                          str(tmp_path / "nope.csv")], capture_output=True, text=True,
                         cwd=course.ROOT)
    assert bad.returncode == 2 and "--roster" in bad.stderr
