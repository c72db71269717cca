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
Python that ``setup.sh`` installs; ``COURSE_AUTOGRADER_SKIP_INSTALL=1`` makes ``setup.sh`` skip
apt-get and pip when that Python already has torch, nbval and ``helpers``: for tests only.

Inside the container the grader runs as root. Where it can create no namespace (Docker's
default seccomp profile forbids them, and Gradescope's container may be such), it grades at the
``uid-only`` level (:mod:`helpers.grading.sandbox`): before any learner code runs,
``source/``, ``submission/`` and ``results/`` are made root's alone (mode 0700), the kernel
runs as a uid of its own, and every process of that uid is killed before ``results.json`` is
written. ``results.json`` is written last, atomically, after checking that its ``score`` is
the sum of its tests and at most their total; the case seed is in no text of it (it is printed
on the grader's stdout, which learners do not see).
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
# Gradescope runs this once, as root, when it builds the autograder image (its default image:
# Ubuntu 22.04, whose python3 is 3.10; the course supports Python >= 3.10).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
AG="${COURSE_AUTOGRADER_ROOT:-/autograder}"
PY="${COURSE_AUTOGRADER_PYTHON:-$AG/venv/bin/python}"
# COURSE_AUTOGRADER_SKIP_INSTALL=1 (tests, an offline rebuild): no apt-get and no pip when the
# Python already has what the grader needs
if [ "${COURSE_AUTOGRADER_SKIP_INSTALL:-0}" = "1" ] && "$PY" -c "import torch, nbval, helpers" >/dev/null 2>&1; then
  echo "setup.sh: $PY already has torch, nbval and helpers: apt-get and pip skipped"
else
  apt-get update -q
  apt-get install -y -q python3 python3-venv python3-pip
  # the grader's allow-list sandbox where the container permits it (else it falls back: without
  # namespaces, as root, to its uid-only level)
  apt-get install -y -q bubblewrap || echo "bubblewrap not available: the grader falls back"
  python3 -m venv "$AG/venv"
  PY="$AG/venv/bin/python"
  "$PY" -m pip install -q --upgrade pip
  # torch's CPU build: Gradescope's machines have no GPU
  # (the version the course was tested with; the newest CPU build if the image's Python has none)
  "$PY" -m pip install -q "torch=={torch}" --index-url https://download.pytorch.org/whl/cpu \\
    || "$PY" -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
  # the course package (helpers) at commit {commit}, not editable: the reference solutions in
  # $AG/source/course/solutions are not part of the installed package
  "$PY" -m pip install -q "$AG/source/course"
fi
"$PY" -c "import helpers, torch, nbval; print('course helpers ready, torch', torch.__version__)"
"""

RUN_AUTOGRADER = """\
#!/usr/bin/env bash
# Gradescope runs this once per submission, in /autograder. It grades every notebook in
# submission/ with the course's grader and writes results/results.json.
set -uo pipefail
ROOT="${{{root_env}:-{default_root}}}"
PY="${{{python_env}:-$ROOT/venv/bin/python}}"
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
    levels = sorted({r.isolation for r in results if r.isolation})
    head = "Graded by the course's autograder" + (f" (isolation: {', '.join(levels)})." if levels else ".")
    out = {"score": float(score), "execution_time": int(round(seconds)),
           "output": "\n".join([head] + notes),
           "visibility": "visible", "stdout_visibility": "hidden", "tests": tests,
           "extra_data": {"isolation": levels}}
    return _scrub(out, seed)


def _scrub(obj, seed):
    """``obj`` with the case seed scrubbed from every string in it (keys included)."""
    from helpers.grading.sandbox import scrub_seed
    if isinstance(obj, str):
        return scrub_seed(obj, seed)
    if isinstance(obj, dict):
        return {_scrub(k, seed): _scrub(v, seed) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_scrub(v, seed) for v in obj]
    return obj


def check_results(res: dict) -> list[str]:
    """What is wrong with a ``results.json`` object (empty: it may be written): every test
    has ``0 <= score <= max_score``, and ``score`` is the sum of the tests' scores and at most
    their total."""
    problems = []
    tests = res.get("tests")
    if not isinstance(tests, list):
        return ["tests is not a list"]
    total = got = 0.0
    for t in tests:
        try:
            sc, mx = float(t["score"]), float(t["max_score"])
        except (KeyError, TypeError, ValueError):
            problems.append(f"test {t!r:.80}: no numeric score/max_score")
            continue
        if not 0 <= sc <= mx:
            problems.append(f"test {t.get('name')}: score {sc} outside 0..{mx}")
        total += mx
        got += sc
    score = res.get("score")
    if not isinstance(score, (int, float)) or isinstance(score, bool):
        problems.append(f"score {score!r} is not a number")
    elif abs(score - got) > 1e-9:
        problems.append(f"score {score} is not the sum of the tests ({got})")
    elif score > total + 1e-9:
        problems.append(f"score {score} exceeds the total {total}")
    return problems


def write_results(results_dir: Path, res: dict) -> dict:
    """Write ``results.json`` atomically (a temporary file in the same folder, then a rename),
    after :func:`check_results`; an object that fails the check is replaced by a score of 0
    that says so."""
    problems = check_results(res)
    if problems:
        print("gradescope: results.json failed its check: " + "; ".join(problems), file=sys.stderr)
        res = {"score": 0.0, "execution_time": res.get("execution_time", 0) if isinstance(
                   res.get("execution_time"), int) else 0,
               "output": "The autograder could not produce a consistent result for this "
                         "submission; please tell your instructor.",
               "visibility": "visible", "stdout_visibility": "hidden", "tests": []}
    fd, tmp = tempfile.mkstemp(prefix=".results-", suffix=".json", dir=results_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(res, indent=2) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, results_dir / "results.json")
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return res


def _close_to_others(*folders: Path) -> None:
    """As root: ``folders`` become root's alone (mode 0700), before any learner code runs."""
    if os.name == "nt" or os.geteuid() != 0:
        return
    for f in folders:
        if f.is_dir() and not f.is_symlink():
            os.chown(f, 0, 0)
            os.chmod(f, 0o700)


def run(root: Path) -> dict:
    """Grade ``root/submission`` and write ``root/results/results.json`` (returns it)."""
    from helpers.grading.runner import Options, UsageError, grade

    t0 = time.monotonic()
    config = json.loads((root / "source" / "config.json").read_text())
    lessons = list(config["lessons"])
    results_dir = root / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    # the course source (with the solutions), the submission and the results are root's alone:
    # a kernel that runs as another uid (uid-only level) can neither read nor write them
    _close_to_others(root / "source", root / "submission", results_dir)
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
    # nothing of the submission may still run when the result is written (run_notebook killed
    # each run's uid already; this is the last net, for every uid handed out)
    from helpers.grading import sandbox
    sandbox.kill_all_job_uids()
    res = write_results(results_dir, res)   # the last thing written
    if os.name != "nt" and os.geteuid() == 0:
        # no process of the submission is left: the platform may read the folder as any user
        os.chmod(results_dir, 0o755)
    # the grader's stdout is hidden from learners (stdout_visibility): the seed is for instructors
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
