"""The course's grader on Gradescope: an autograder zip, and the script that runs inside it.

``python -m helpers.grade --gradescope 03 --out autograder.zip`` writes a zip to Gradescope's
autograder specification (https://gradescope-autograders.readthedocs.io/en/latest/specs/):

- ``setup.sh`` (run once when Gradescope builds the image): installs Python, torch's CPU
  build (Gradescope's machines have no GPU) and the course package from ``course/`` (this
  commit's ``helpers``; the reference solutions stay in ``/autograder/source/course/solutions``,
  which learners never see), plus bubblewrap where apt has it.
- ``run_autograder`` (run once per submission, working directory ``/autograder``): grades
  every notebook in ``/autograder/submission/`` with :mod:`helpers.grade` (a fresh case seed
  per submission) and writes ``/autograder/results/results.json``: the total ``score``,
  ``execution_time``, one ``tests`` entry per exercise (``name``, ``score``, ``max_score``,
  ``status``, ``output`` = the hint) visible to the learner; the grader's stdout stays hidden.
- ``config.json``: the lessons this assignment grades, the commit, the limits.

``COURSE_AUTOGRADER_ROOT`` replaces ``/autograder`` and ``COURSE_AUTOGRADER_PYTHON`` the
Python that ``setup.sh`` installs: for tests only.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from helpers import course

ROOT_ENV = "COURSE_AUTOGRADER_ROOT"
PYTHON_ENV = "COURSE_AUTOGRADER_PYTHON"
DEFAULT_ROOT = "/autograder"
COURSE_FILES = ("pyproject.toml", "README.md", "LICENSE", "environment.yml")

SETUP_SH = """\
#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (Ubuntu).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q python3 python3-venv python3-pip
# the grader's allow-list sandbox where the container permits it (else it falls back)
apt-get install -y -q bubblewrap || echo "bubblewrap not available: the grader falls back"
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install -q --upgrade pip
# torch's CPU build: Gradescope's machines have no GPU
# (the version the course was tested with; the newest CPU build if the image's Python has none)
/autograder/venv/bin/pip install -q "torch=={torch}" --index-url https://download.pytorch.org/whl/cpu \
  || /autograder/venv/bin/pip install -q torch --index-url https://download.pytorch.org/whl/cpu
# the course package (helpers) at commit {commit}, not editable: the reference solutions in
# /autograder/source/course/solutions are not part of the installed package
/autograder/venv/bin/pip install -q /autograder/source/course
/autograder/venv/bin/python -c "import helpers, torch, nbval; print('course helpers ready, torch', torch.__version__)"
"""

RUN_AUTOGRADER = """\
#!/usr/bin/env bash
# Gradescope runs this once per submission, in /autograder. It grades every notebook in
# submission/ with the course's grader and writes results/results.json.
set -uo pipefail
ROOT="${{{root_env}:-{default_root}}}"
PY="${{{python_env}:-/autograder/venv/bin/python}}"
cd "$ROOT/source/course" || exit 1
"$PY" -m helpers.grading.gradescope --root "$ROOT"
status=$?
if [ ! -s "$ROOT/results/results.json" ]; then
  mkdir -p "$ROOT/results"
  printf '%s\\n' '{{"score": 0.0, "output": "The autograder failed before it could grade this submission; please tell your instructor.", "visibility": "visible", "stdout_visibility": "hidden", "tests": []}}' > "$ROOT/results/results.json"
fi
exit $status
"""


# --------------------------------------------------------------------------- building

def _git(*args) -> str:
    try:
        return subprocess.run(["git", *args], cwd=course.ROOT, capture_output=True, text=True,
                              timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def course_files(lessons: list[str], solutions: Path) -> dict[str, Path]:
    """``{path in the zip under course/: file}``: the package, its metadata and the lessons'
    reference solutions (in a git checkout: files git does not ignore)."""
    tracked = set(_git("ls-files", "--cached", "--others", "--exclude-standard", "helpers").splitlines())
    files: dict[str, Path] = {}
    for p in sorted((course.ROOT / "helpers").rglob("*")):
        rel = p.relative_to(course.ROOT).as_posix()
        if p.is_file() and "__pycache__" not in rel and (not tracked or rel in tracked):
            files[rel] = p
    for name in COURSE_FILES:
        if (course.ROOT / name).is_file():
            files[name] = course.ROOT / name
    for lesson in lessons:
        stem = course.LESSONS[lesson][0]
        src = solutions / f"{stem}.ipynb"
        if not src.is_file():
            raise FileNotFoundError(f"no reference solutions for lesson {lesson}: {src}")
        files[f"solutions/{stem}.ipynb"] = src
    return files


def build_zip(lessons: list[str], out: Path, solutions: Path = course.SOLUTIONS,
              cell_timeout: float = 60.0, memory_gib: float = 6.0) -> dict:
    """Write the autograder zip for ``lessons``; returns its ``config.json`` contents."""
    import torch

    commit = _git("rev-parse", "HEAD") or "unknown"
    dirty = bool(_git("status", "--porcelain", "--", "helpers", *COURSE_FILES))
    files = course_files(lessons, solutions)
    config = {"lessons": lessons, "commit": commit, "uncommitted_changes": dirty,
              "cell_timeout": cell_timeout, "memory_gib": memory_gib,
              "torch": torch.__version__.split("+")[0]}
    setup = SETUP_SH.replace("{torch}", config["torch"]).replace("{commit}", commit)
    run = RUN_AUTOGRADER.format(root_env=ROOT_ENV, default_root=DEFAULT_ROOT, python_env=PYTHON_ENV)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in (("setup.sh", setup), ("run_autograder", run)):
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFREG | 0o755) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, text)
        z.writestr("config.json", json.dumps(config, indent=2) + "\n")
        for rel, src in files.items():
            z.write(src, f"course/{rel}")
    return config


# --------------------------------------------------------------------------- running

def _visible_output(row, names: dict, notes: list) -> str:
    text = "Correct." if row.status == "passed" else (row.message or row.status)
    if row.status not in ("passed", "failed"):
        text = f"[{row.status}] " + text
    for n in notes:
        text += f"\n\nNote: {n}"
    return text


def results_for(results, lessons: list[str], seconds: float, seed: int | None) -> dict:
    """The ``results.json`` object for one Gradescope submission."""
    from helpers.checks import lesson_exercises

    tests, notes = [], []
    by_lesson: dict = {}
    for r in results:
        if r.lesson not in lessons:
            what = f"lesson {r.lesson}" if r.lesson else "no lesson of this course"
            msg = r.rows[0].message if (not r.lesson and r.rows) else ""
            notes.append(f"{Path(r.submission).name}: {what}" + (f" ({msg})" if msg else "")
                         + f"; this assignment grades lesson {', '.join(lessons)}: not graded")
            continue
        best = by_lesson.get(r.lesson)
        if best is None or r.points > best.points:
            if best is not None:
                notes.append(f"{Path(best.submission).name} and {Path(r.submission).name} are both "
                             f"lesson {r.lesson}: the one with more points counts")
            by_lesson[r.lesson] = r
    for lesson in lessons:
        r = by_lesson.get(lesson)
        if r is None:
            for ex in lesson_exercises(lesson):
                tests.append({"name": f"{ex.id} {ex.name}", "score": 0.0,
                              "max_score": float(ex.points), "status": "failed",
                              "output": f"no notebook of lesson {lesson} was found in your "
                                        "submission (upload the .ipynb file)",
                              "visibility": "visible"})
            continue
        for n in r.notes:
            notes.append(f"{Path(r.submission).name}: {n}")
        for row in r.rows:
            name = r.names.get(row.exercise)
            tests.append({"name": f"{row.exercise} {name}" if name else row.exercise,
                          "score": float(row.points), "max_score": float(row.max_points),
                          "status": "passed" if row.status == "passed" else "failed",
                          "output": _visible_output(row, r.names, r.exercise_notes.get(row.exercise, [])),
                          "visibility": "visible"})
    score = sum(t["score"] for t in tests)
    out = {"score": float(score), "execution_time": int(round(seconds)),
           "output": "\n".join(notes) if notes else "Graded by the course's autograder.",
           "visibility": "visible", "stdout_visibility": "hidden", "tests": tests,
           "extra_data": {"seed": seed, "isolation": sorted({r.isolation for r in results})}}
    return out


def run(root: Path) -> dict:
    """Grade ``root/submission`` and write ``root/results/results.json`` (returns it)."""
    from helpers.grading.runner import Options, UsageError, grade

    t0 = time.monotonic()
    config = json.loads((root / "source" / "config.json").read_text())
    lessons = list(config["lessons"])
    results_dir = root / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    solutions = root / "source" / "course" / "solutions"
    with tempfile.TemporaryDirectory(prefix="course-gradescope-") as tmp:
        opts = Options(out=Path(tmp) / "out", jobs=1, cell_timeout=float(config.get("cell_timeout", 60)),
                       solutions=solutions, memory_gib=float(config.get("memory_gib", 6)),
                       progress=False, default_lesson=lessons[0] if len(lessons) == 1 else None)
        try:
            results = grade([root / "submission"], opts)
        except UsageError:
            results = []
        res = results_for(results, lessons, time.monotonic() - t0, opts.seed)
    (results_dir / "results.json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print(f"graded {len(results)} notebook(s), case seed {opts.seed}, score {res['score']:g}")
    for r in results:
        for row in r.rows:
            print(f"  {r.submission}: {row.exercise} {row.status} {row.message[:200]}")
    return res


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m helpers.grading.gradescope",
                                 description="Run inside Gradescope's container (run_autograder).")
    ap.add_argument("--root", default=os.environ.get(ROOT_ENV, DEFAULT_ROOT))
    args = ap.parse_args(argv)
    run(Path(args.root))
    return 0


if __name__ == "__main__":
    sys.modules.setdefault("rfc3987_syntax", None)
    sys.exit(main())
