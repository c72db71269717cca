"""Grading a real class: files as LMS downloads bring them, a roster, the assignment's lessons.

- Only regular files inside the folders given are read: a symlink (to a file or a folder), a
  FIFO, a socket or a device gets an ``error`` row that names it, and nothing it points to is
  read. Two learners handing in the same bytes are both graded and flagged.
- The learner of a file: the first folder under the folder given, else a Canvas, Moodle or
  Blackboard download name, else the stem; ``--roster`` matches by id, login or name.
- ``--lessons`` (default: the lessons most learners handed in): a file of another lesson gets
  one error row and changes no other learner's columns or ``max_total``.

Everything but the last test starts no kernel (stubs, broken files, or the planning step
alone); the last grades a realistic download of lesson 07 with a roster, ``--jobs 2``.
"""

from __future__ import annotations

import csv
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import course
from helpers.checks import lesson_exercises
from helpers.grading import report
from helpers.grading.learners import Entry, Roster, match, parse_download, read_roster, who_of
from helpers.grading.runner import Options, plan

sys.path.insert(0, str(Path(__file__).parent / "submissions"))
from builders import dumps, fill, learner_copy, solution_sources  # noqa: E402

PY = sys.executable


def _cli(*args, timeout=300):
    return subprocess.run([PY, "-m", "helpers.grade", *map(str, args)], capture_output=True,
                          text=True, cwd=course.ROOT, timeout=timeout)


def _csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _stub(lesson="07") -> bytes:
    return dumps(learner_copy(lesson))


def _answered(lesson="07", overrides=None, tag="") -> bytes:
    """A filled notebook; ``tag`` makes its bytes differ (each learner saves their own file)."""
    nb = fill(learner_copy(lesson), solution_sources(lesson), overrides or {})
    if tag:
        nb.metadata["saved_by"] = tag
    return dumps(nb)


def _one(tag: str) -> bytes:
    """Lesson 07 with only ex7.2 answered (1 point)."""
    nb = fill(learner_copy("07"), {"ex7.2": solution_sources("07")["ex7.2"]})
    nb.metadata["saved_by"] = tag
    return dumps(nb)


# --------------------------------------------------------------------------- download names

@pytest.mark.parametrize("name, fields", [
    ("martinalice_LATE_5551_90001_07_early_stopping.ipynb",
     {"platform": "canvas", "login": "martinalice", "ids": ("5551",), "late": True,
      "original": "07_early_stopping.ipynb"}),
    ("bchen_5552_123456_07_early_stopping-1.ipynb",
     {"platform": "canvas", "login": "bchen", "ids": ("5552",), "late": False,
      "original": "07_early_stopping-1.ipynb"}),
    ("Carla Diaz_77_assignsubmission_file_",
     {"platform": "moodle", "person": "Carla Diaz", "ids": ("77",), "original": ""}),
    ("Carla Diaz_77_assignsubmission_file_07_early_stopping.ipynb",
     {"platform": "moodle", "person": "Carla Diaz", "original": "07_early_stopping.ipynb"}),
    ("Homework 7_devans_attempt_2026-12-01-10-30-00_07_early_stopping.ipynb",
     {"platform": "blackboard", "login": "devans", "original": "07_early_stopping.ipynb"}),
    ("Homework_7_devans_attempt_2026-12-01-10-30-00_07_early_stopping.ipynb",
     {"platform": "blackboard", "login": "devans"}),
    ("alice_1234_03_dropout.ipynb", None),        # not a Canvas name: "03" is no submission id
    ("Copy of 03_dropout.ipynb", None),
    ("03_dropout (1).ipynb", None),
])
def test_download_names(name, fields):
    got = parse_download(name)
    if fields is None:
        assert got is None
    else:
        assert got is not None and {k: got[k] for k in fields} == fields


def test_learner_from_folder_download_name_or_stem(tmp_path):
    sub = tmp_path / "sub"
    (sub / "alice").mkdir(parents=True)
    (sub / "Carla Diaz_77_assignsubmission_file_").mkdir()
    cases = [
        (sub / "alice" / "deep" / "07_early_stopping.ipynb", "alice", "folder"),
        (sub / "Carla Diaz_77_assignsubmission_file_" / "07_early_stopping.ipynb", "Carla Diaz", "moodle"),
        (sub / "bchen_5552_123456_07_early_stopping.ipynb", "bchen", "canvas"),
        (sub / "Homework 7_devans_attempt_2026-12-01-10-30-00_07_early_stopping.ipynb", "devans", "blackboard"),
        (sub / "Copy of 07_early_stopping.ipynb", "Copy of 07_early_stopping", "file name"),
        # a download extracted into a folder of its own: the download names still decide
        (sub / "hw7" / "bchen_5552_123456_07_early_stopping.ipynb", "bchen", "canvas"),
        (sub / "hw7" / "Carla Diaz_77_assignsubmission_file_" / "07_early_stopping.ipynb",
         "Carla Diaz", "moodle"),
    ]
    for path, name, source in cases:
        w = who_of(str(sub), path)
        assert (w.name, w.source) == (name, source), path


# --------------------------------------------------------------------------- the roster

ROSTER = """learner,student_id,login,email
Alice Martin,1001,amartin,alice.martin@uni.example
Bob Chen,1002,bchen,bob@uni.example
carla  DIAZ,1003,,
Dan Evans,1004,devans,
Frank Gale,1006,fgale,
John Smith,2001,,
John Smith,2002,,
"""


@pytest.fixture
def roster(tmp_path) -> Roster:
    p = tmp_path / "roster.csv"
    p.write_text(ROSTER, encoding="utf-8")
    return read_roster(p)


def test_roster_columns(roster, tmp_path):
    # two learners of one name stay two (labelled with their ids)
    assert list(roster) == ["Alice Martin", "Bob Chen", "carla  DIAZ", "Dan Evans", "Frank Gale",
                            "John Smith [2001]", "John Smith [2002]"]
    assert roster["Bob Chen"] == "1002"
    e = roster.entries[0]
    assert (e.login, e.email) == ("amartin", "alice.martin@uni.example")
    p = tmp_path / "logins.csv"
    p.write_text("login,student_id\nbchen,1002\n", encoding="utf-8")  # logins only
    r = read_roster(p)
    assert dict(r) == {"bchen": "1002"} and r.entries[0].login == "bchen"
    p.write_text("learner;student_id\nJosé Núñez;77\n", encoding="utf-8")   # Excel's ;
    assert dict(read_roster(p)) == {"José Núñez": "77"}
    # a Canvas gradebook export: "Student" is "Last, First", "ID" Canvas's user id (the one in
    # its download names), a "Points Possible" row under the header
    p.write_text('Student,ID,SIS User ID,SIS Login ID,Section,Homework 7\n'
                 '    Points Possible,,,,,3\n'
                 '"Smith, Jane",5553,S-77,jsmith,Sec 1,\n', encoding="utf-8")
    r = read_roster(p)
    assert dict(r) == {"Smith, Jane": "5553"} and r.entries[0].login == "jsmith"
    sub = tmp_path / "canvas"
    for name in ("smithjane_5553_90003_07_early_stopping.ipynb", "janesmith_1_90003_07_x.ipynb",
                 "jsmith_9_90003_07_x.ipynb"):
        assert match(r, who_of(str(sub), sub / name)).entry is r.entries[0], name


@pytest.mark.parametrize("rel, learner", [
    ("martinalice_LATE_5551_90001_07_early_stopping.ipynb", "Alice Martin"),   # Canvas name, reversed
    ("amartin_5551_90001_07_early_stopping.ipynb", "Alice Martin"),            # Canvas login
    ("bchen_5552_123456_07_early_stopping-1.ipynb", "Bob Chen"),
    ("Carla Diaz_77_assignsubmission_file_/07_early_stopping.ipynb", "carla  DIAZ"),  # case, spaces
    ("Homework 7_devans_attempt_2026-12-01-10-30-00_07_early_stopping.ipynb", "Dan Evans"),
    ("frank_1006_07_early_stopping.ipynb", "Frank Gale"),        # the id among the words
    ("fgale-07_early_stopping.ipynb", "Frank Gale"),             # the login among the words
    ("Alice.Martin 07_early_stopping.ipynb", "Alice Martin"),    # the name among the words
    ("alice.martin@uni.example_07_early_stopping.ipynb", "Alice Martin"),
    ("bob/07_early_stopping.ipynb", "Bob Chen"),                 # e-mail's local part as a folder
    ("Smith_2002_07_early_stopping.ipynb", "John Smith [2002]"), # the id tells the two apart
    ("Copy of 07_early_stopping.ipynb", None),
    ("07_early_stopping (1).ipynb", None),
    ("John Smith_07_early_stopping.ipynb", None),                # two John Smiths: no guess
    ("1003.ipynb", "carla  DIAZ"),
])
def test_roster_matching(roster, tmp_path, rel, learner):
    sub = tmp_path / "sub"
    path = sub / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    m = match(roster, who_of(str(sub), path))
    assert (m.entry.label if m.entry else None) == learner, m.how


def test_plain_dict_roster_still_works(tmp_path):
    sub = tmp_path / "sub"
    (sub / "alice").mkdir(parents=True)
    (sub / "alice" / "07_early_stopping.ipynb").write_bytes(_stub())
    (sub / "bob_07_early_stopping.ipynb").write_bytes(_stub())
    opts = Options(out=tmp_path / "o", roster={"alice": "A1", "bob": "B2"}, seed=3)
    _, jobs = plan([sub], opts)
    assert [j.result.learner for j in jobs] == ["alice", "bob"]


# --------------------------------------------------------------------------- regular files only

def test_only_regular_files_are_read(tmp_path):
    """aaron's symlink to erin's file: aaron gets an error row naming it, erin keeps her
    rows; a symlinked folder, a FIFO, a socket and a device are named and not read."""
    sub = tmp_path / "sub"
    for d in ("erin", "aaron", "fifo", "sock", "dev"):
        (sub / d).mkdir(parents=True)
    (sub / "erin" / "07_early_stopping.ipynb").write_bytes(_stub())
    os.symlink("../erin/07_early_stopping.ipynb", sub / "aaron" / "07_early_stopping.ipynb")
    os.symlink(str(course.SOLUTIONS), sub / "solutions")
    os.mkfifo(sub / "fifo" / "07_early_stopping.ipynb")
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(sub / "sock" / "07_early_stopping.ipynb"))
        made_socket = True
    except OSError:  # AF_UNIX path too long in a deep temporary folder
        made_socket = False
    made_device = False
    try:
        os.mknod(sub / "dev" / "07_early_stopping.ipynb", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        made_device = True
    except (PermissionError, OSError):
        pass
    out = tmp_path / "out"
    p = _cli(sub, "--out", out, "-q", "--seed", "5", timeout=120)  # a FIFO read would hang here
    s.close()
    assert p.returncode == 0, p.stderr[-2000:]
    rows = _csv(out / "gradebook.csv")
    by = {}
    for r in rows:
        by.setdefault(os.path.relpath(r["submission"], sub), []).append(r)
    ids = [e.id for e in lesson_exercises("07")]
    assert [r["status"] for r in by["erin/07_early_stopping.ipynb"]] == ["missing"] * len(ids)
    aaron = by["aaron/07_early_stopping.ipynb"]
    assert [r["exercise"] for r in aaron] == ids and {r["status"] for r in aaron} == {"error"}
    assert "symbolic link" in aaron[0]["message"] and "../erin/07_early_stopping.ipynb" in aaron[0]["message"]
    assert by["solutions"][0]["status"] == "error" and "symbolic link" in by["solutions"][0]["message"]
    assert not any("solutions/" in k for k in by)  # nothing under the linked folder was listed
    assert "named pipe" in by["fifo/07_early_stopping.ipynb"][0]["message"]
    if made_socket:
        assert "socket" in by["sock/07_early_stopping.ipynb"][0]["message"]
    if made_device:
        assert "device" in by["dev/07_early_stopping.ipynb"][0]["message"]
    # a device given directly as PATH is refused the same way
    p = _cli("/dev/null", "--out", tmp_path / "o2", "-q", timeout=120)
    assert p.returncode == 0 and "a device" in _csv(tmp_path / "o2" / "gradebook.csv")[0]["message"]


def test_symlink_swapped_in_after_the_walk_is_not_followed(tmp_path):
    """The read opens each folder below the one given with O_NOFOLLOW: a folder replaced by a
    symlink between the walk and the read is refused, not followed."""
    from helpers.grading.runner import _discover, _read
    sub = tmp_path / "sub"
    (sub / "alice").mkdir(parents=True)
    (sub / "alice" / "07_early_stopping.ipynb").write_bytes(_stub())
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "07_early_stopping.ipynb").write_bytes(b'{"secret": 1}')
    found = _discover([sub])
    (sub / "alice" / "07_early_stopping.ipynb").unlink()
    (sub / "alice").rmdir()
    os.symlink(secret, sub / "alice")
    data = _read(found[0])
    assert not isinstance(data, bytes) and "symbolic link" in str(data)


def test_same_bytes_from_two_learners_both_graded_and_flagged(tmp_path):
    sub = tmp_path / "sub"
    for who in ("erin", "aaron", "zoe"):
        (sub / who).mkdir(parents=True)
    data = _answered(overrides={"ex7.2": "def cosine_lr(*a, **k):\n    return 0.0"})
    (sub / "erin" / "07_early_stopping.ipynb").write_bytes(data)
    os.link(sub / "erin" / "07_early_stopping.ipynb", sub / "aaron" / "07_early_stopping.ipynb")
    (sub / "zoe" / "07_early_stopping.ipynb").write_bytes(_stub())   # a stub: not flagged
    (sub / "erin" / "07_early_stopping (1).ipynb").write_bytes(_stub())
    (sub / "zoe" / "07_early_stopping (2).ipynb").write_bytes(b"")      # empty files: not flagged
    (sub / "erin" / "07_early_stopping (2).ipynb").write_bytes(b"")
    _, jobs = plan([sub], Options(out=tmp_path / "o", seed=3))
    res = {os.path.relpath(j.result.submission, sub): j for j in jobs}
    assert len(res) == 6                                  # nothing dropped as a duplicate
    assert res["zoe/07_early_stopping (2).ipynb"].result.same_as == []
    assert res["aaron/07_early_stopping.ipynb"].result.same_as == [str(sub / "erin" / "07_early_stopping.ipynb")]
    assert res["erin/07_early_stopping.ipynb"].result.same_as == [str(sub / "aaron" / "07_early_stopping.ipynb")]
    assert res["zoe/07_early_stopping.ipynb"].result.same_as == []
    assert all(res[k].ref is not None for k in res if "(2)" not in k)  # all notebooks are graded
    r = res["aaron/07_early_stopping.ipynb"].result
    from helpers.grading.runner import Row
    msg = report.gradebook_message(r, Row(r.submission, "07", "ex7.1", 1, 1, "passed", ""))
    assert msg == "same file as " + str(sub / "erin" / "07_early_stopping.ipynb")
    # the learner's own feedback does not name the other learner
    r.rows = [Row(r.submission, "07", "ex7.1", 1, 1, "passed", "")]
    r.feedback = "x.md"
    assert "erin" not in report.feedback_text(r)


# --------------------------------------------------------------------------- the assignment

def test_other_lesson_file_changes_no_columns(tmp_path):
    """A lesson-05 notebook saved as 07_early_stopping.ipynb: one error row for it; the class's
    columns and max_total stay lesson 07's (no kernel: stubs only)."""
    sub = tmp_path / "sub"
    for who in ("alice", "bob", "carol"):
        (sub / who).mkdir(parents=True)
    (sub / "alice" / "07_early_stopping.ipynb").write_bytes(_stub())
    (sub / "bob" / "07_early_stopping.ipynb").write_bytes(_stub())
    (sub / "carol" / "07_early_stopping.ipynb").write_bytes(_stub("05"))
    out = tmp_path / "out"
    p = _cli(sub, "--out", out, "-q", "--seed", "4", timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "assignment: lesson 07" in p.stderr and "carol/07_early_stopping.ipynb: lesson 05" in p.stderr
    rows = [r for r in _csv(out / "gradebook.csv") if "carol" in r["submission"]]
    assert len(rows) == 1 and rows[0]["status"] == "error" and rows[0]["exercise"] == "-"
    assert "lesson 05" in rows[0]["message"] and "assignment is lesson 07" in rows[0]["message"]
    grades = _csv(out / "grades.csv")
    assert not any(k.startswith("ex5.") or k == "lesson_05" for k in grades[0])
    mx = str(sum(e.points for e in lesson_exercises("07")))
    assert {g["max_total"] for g in grades} == {mx}
    assert [g["learner"] for g in grades] == ["alice", "bob", "carol"]
    # --lessons names the assignment: then lesson 05 is graded and 07 files get the error row
    out2 = tmp_path / "out2"
    p = _cli(sub, "--out", out2, "-q", "--seed", "4", "--lessons", "5", timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    g = _csv(out2 / "grades.csv")
    assert "lesson_05" in g[0] and "lesson_07" not in g[0]
    assert _cli(sub, "--lessons", "09").returncode == 2


def test_default_assignment_keeps_lessons_most_learners_hand_in(tmp_path):
    sub = tmp_path / "sub"
    layout = {"a": ["03", "04"], "b": ["03", "04"], "c": ["03", "04"], "d": ["03"], "e": ["05"]}
    for who, lessons in layout.items():
        (sub / who).mkdir(parents=True)
        for lesson in lessons:
            (sub / who / f"{course.LESSONS[lesson][0]}.ipynb").write_bytes(_stub(lesson))
    opts = Options(out=tmp_path / "o", seed=3)
    _, jobs = plan([sub], opts)
    assert opts.lessons == ("03", "04")   # 03: 4 learners; 04: 3 (more than half); 05: 1
    e = next(j for j in jobs if "/e/" in j.result.submission)
    assert e.ref is None and e.result.rows[0].status == "error"
    header, table = report.grades_table([j.result for j in jobs], None, opts.lessons)
    assert "lesson_05" not in header and {row[0] for row in table} == set(layout)
    # one learner grading their own two lessons gets both
    opts = Options(out=tmp_path / "o", seed=3)
    plan([sub / "a"], opts)
    assert opts.lessons == ("03", "04")


def test_broken_file_of_another_lesson(tmp_path):
    sub = tmp_path / "sub"
    (sub / "a").mkdir(parents=True)
    (sub / "a" / "07_early_stopping.ipynb").write_bytes(_stub())
    (sub / "a" / "05_label_smoothing.ipynb").write_bytes(b"{broken")
    opts = Options(out=tmp_path / "o", seed=3, lessons=("07",))
    _, jobs = plan([sub], opts)
    bad = next(j for j in jobs if "05_" in j.result.submission).result
    assert [r.exercise for r in bad.rows] == ["-"]
    assert "not valid notebook JSON" in bad.rows[0].message and "lesson 05" in bad.rows[0].message


# --------------------------------------------------------------------------- a class, end to end

ROSTER_CLASS = """learner,student_id,login,email
Alice Martin,1001,amartin,alice.martin@uni.example
Bob Chen,1002,bchen,
Carla Diaz,1003,,
Dan Evans,1004,devans,
Eve Fox,1005,efox,
Frank Gale,1006,fgale,
Gina Hale,1007,,
Henry Ito,1008,hito,
Ivan Ho,1009,,
"""


@pytest.mark.slow
def test_lms_downloads_with_roster(tmp_path):
    """Canvas (flat, login_LATE_id_subid_name), Moodle (a folder per learner), Blackboard
    (attempt names), graded in one run with a roster: one row per roster learner with the right
    score, the unmatched file's own row and a stderr line, the same bytes flagged, a symlink and
    a file of another lesson refused without touching anyone else's grade."""
    n = len(lesson_exercises("07"))
    canvas, moodle, bb = tmp_path / "canvas", tmp_path / "moodle", tmp_path / "blackboard"
    for d in (canvas, moodle, bb):
        d.mkdir()
    # Canvas: Alice late with a full answer, Bob's resubmission a stub, Frank's own name
    (canvas / "martinalice_LATE_5551_90001_07_early_stopping.ipynb").write_bytes(_answered(tag="alice"))
    (canvas / "bchen_5552_90002_07_early_stopping-1.ipynb").write_bytes(_stub())
    (canvas / "frank_1006_07_early_stopping.ipynb").write_bytes(_one("frank"))
    (canvas / "Copy of 07_early_stopping.ipynb").write_bytes(_stub())  # whose? nobody can tell
    # Moodle: Carla one answer; Gina a lesson-05 notebook under lesson 07's name; Ivan a symlink
    def mdir(person, num):
        d = moodle / f"{person}_{num}_assignsubmission_file_"
        d.mkdir()
        return d
    (mdir("Carla Diaz", 77) / "07_early_stopping.ipynb").write_bytes(_one("carla"))
    (mdir("Gina Hale", 78) / "07_early_stopping.ipynb").write_bytes(_stub("05"))
    os.symlink(canvas / "martinalice_LATE_5551_90001_07_early_stopping.ipynb",
               mdir("Ivan Ho", 79) / "07_early_stopping.ipynb")
    # Blackboard: Dan full; Henry the same bytes as Dan
    dan = _answered(tag="dan")
    (bb / "Homework 7_devans_attempt_2026-12-01-10-30-00_07_early_stopping.ipynb").write_bytes(dan)
    (bb / "Homework 7_hito_attempt_2026-12-01-11-00-00_07_early_stopping.ipynb").write_bytes(dan)
    roster = tmp_path / "roster.csv"
    roster.write_text(ROSTER_CLASS, encoding="utf-8")
    out = tmp_path / "out"
    p = _cli(canvas, moodle, bb, "--out", out, "-q", "--jobs", "2", "--seed", "11",
             "--roster", roster, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    grades = {g["learner"]: g for g in _csv(out / "grades.csv")}
    want = {"Alice Martin": n, "Bob Chen": 0, "Carla Diaz": 1, "Dan Evans": n, "Eve Fox": 0,
            "Frank Gale": 1, "Gina Hale": 0, "Henry Ito": n, "Ivan Ho": 0,
            "Copy of 07_early_stopping": 0}
    assert list(grades) == list(want)      # roster order, then the unmatched file's own row
    got = {k: float(g["total"]) for k, g in grades.items()}
    assert got == {k: float(v) for k, v in want.items()}, (got, p.stderr[-2000:])
    assert grades["Frank Gale"]["student_id"] == "1006" and grades["Copy of 07_early_stopping"]["student_id"] == ""
    assert {g["max_total"] for g in grades.values()} == {str(n)}
    assert not any(k.startswith("ex5.") for k in next(iter(grades.values())))
    assert "not in the roster" in p.stderr and "Copy of 07_early_stopping.ipynb" in p.stderr
    rows = _csv(out / "gradebook.csv")
    dan = [r for r in rows if "devans" in r["submission"]]
    henry = [r for r in rows if "hito" in r["submission"]]
    assert all("same file as" in r["message"] and "hito" in r["message"] for r in dan)
    assert all("same file as" in r["message"] and "devans" in r["message"] for r in henry)
    alice = [r for r in rows if "martinalice" in r["submission"]]
    assert all("same file as" not in r["message"] for r in alice)   # Ivan's link is not a copy
    assert {r["learner"] for r in dan} == {"Dan Evans"} and {r["learner"] for r in henry} == {"Henry Ito"}
    ivan = [r for r in rows if "Ivan Ho" in r["submission"]]
    assert ivan and all(r["status"] == "error" and "symbolic link" in r["message"] for r in ivan)
    gina = [r for r in rows if "Gina Hale" in r["submission"]]
    assert len(gina) == 1 and "lesson 05" in gina[0]["message"]


def test_instructors_guide_lists_what_the_grader_knows():
    """INSTRUCTORS.md names every download pattern parsed here; the README links it and keeps
    its first screen for learners (no grading manual before the course map)."""
    guide = (course.ROOT / "INSTRUCTORS.md").read_text()
    for pattern in ("<login>_[LATE_]<user id>_<submission id>_<original name>",
                    "<Full Name>_<number>_assignsubmission_file_",
                    "<Assignment Name>_<username>_attempt_<YYYY-MM-DD-HH-MM-SS>_<original name>",
                    "--lessons", "--roster", "same file as", "symbolic link"):
        assert pattern in guide, pattern
    readme = (course.ROOT / "README.md").read_text()
    assert "(INSTRUCTORS.md)" in readme
    first_screen = readme[: readme.index("## Course map")]
    assert "roster" not in first_screen and "Gradescope" not in first_screen
    assert "### Threat model" not in readme and "## Threat model" in guide
