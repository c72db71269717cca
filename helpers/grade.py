"""Grade submitted notebooks: a gradebook and one feedback file per submission.

    python -m helpers.grade PATH... [--out DIR] [--jobs N] [--timeout SECONDS]
                                   [--lessons NN[,NN]] [--roster FILE.csv]

PATH: submitted notebooks (a filled ``exercises/NN_*.ipynb`` or ``notebooks/NN_*.ipynb``)
or folders searched for them (regular files only: a symlink, FIFO or device gets an error
row and is not read). The learner of a file is the first folder under the folder given, else
what a Canvas, Moodle or Blackboard download name says, else the file's stem; ``--roster``
ties files to the roster's learners (see INSTRUCTORS.md). ``--lessons`` names the
assignment; a file of another lesson gets an error row. Each submission's answer cells (found by cell metadata, or
by the name they define when metadata was lost) run under the reference setup and check
cells from ``solutions/``, in an isolated kernel under nbval; the verdict comes from the
check's record, judged again here. Writes ``DIR/gradebook.csv`` (one row per submission
and exercise, with the case seed), ``DIR/grades.csv`` (one row per learner: a column per
exercise and per lesson, total, percentage) and ``DIR/feedback/*.md``. The checks build their
inputs from a case seed drawn afresh for each run (``--seed N`` reproduces a run). Exit
status 0 when every submission was graded, whatever the scores; 2 for usage errors.

A learner grades their own work the same way: ``python -m helpers.grade exercises/03_dropout.ipynb``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# jsonschema (imported by nbformat) builds an RFC 3987 grammar at import to validate a
# string format notebooks never use; the grader does without it (half a second of startup).
if __name__ == "__main__":
    sys.modules.setdefault("rfc3987_syntax", None)

from helpers import course  # noqa: E402
from helpers.grading import Options, UsageError, grade  # noqa: E402
from helpers.grading import report  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m helpers.grade",
                                 description=__doc__.split("\n\n")[0],
                                 epilog="Statuses: passed, failed, error, timeout, missing.")
    ap.add_argument("paths", nargs="*", metavar="PATH", help="notebooks or folders of notebooks")
    ap.add_argument("--out", default=None, metavar="DIR",
                    help="where gradebook.csv, grades.csv and feedback/ go (default: "
                         "grading-output/); with --gradescope, the zip (default: autograder.zip)")
    ap.add_argument("--gradescope", default=None, metavar="LESSON[,LESSON...]",
                    help="write a Gradescope autograder zip for these lessons (e.g. 03) instead "
                         "of grading: setup.sh, run_autograder, this commit's course package and "
                         "the reference solutions; see helpers/grading/gradescope.py")
    ap.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                    help="submissions graded at once, one single-threaded kernel each (default 1)")
    ap.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                    help="limit per cell (default 60)")
    ap.add_argument("--submission-timeout", type=float, default=None, metavar="SECONDS",
                    help="wall-clock limit per run of a submission (default: 5 x --timeout, "
                         "at least 120)")
    ap.add_argument("--memory", type=float, default=6.0, metavar="GIB",
                    help="address-space limit per process in GiB (default 6)")
    ap.add_argument("--isolation", choices=("auto", "bubblewrap", "namespaces", "process"),
                    default="auto",
                    help="auto: the best that works here: bubblewrap (the kernel sees only what "
                         "it needs), else Linux namespaces hiding the course (both with a uid per "
                         "job as root), else processes only; bubblewrap, namespaces: require that "
                         "level; process: no sandbox")
    ap.add_argument("--solutions", default=str(course.SOLUTIONS), metavar="DIR",
                    help="folder of the reference solutions notebooks (default: the course's "
                         "solutions/); an instructor may keep a private copy elsewhere")
    ap.add_argument("--seed", type=int, default=None, metavar="N",
                    help="case seed the checks build their inputs from (default: a fresh one per "
                         "run, written to gradebook.csv; give it to reproduce a run)")
    ap.add_argument("--roster", metavar="FILE.csv", default=None,
                    help="CSV of the class: columns learner,student_id and optional login, "
                         "email; files are matched to it by id, login or name (folder, LMS "
                         "download name, or words of the file name); grades.csv gets one row "
                         "per roster learner, then one per file it could not match")
    ap.add_argument("--lessons", default=None, metavar="NN[,NN...]",
                    help="the assignment's lessons (e.g. 03 or 03,04); a file of another lesson "
                         "gets an error row and no grades.csv column (default: the lessons most "
                         "learners handed in)")
    ap.add_argument("--report", action="store_true",
                    help="also write class-report.html beside the gradebook: pass rates, the most "
                         "frequent mistakes, errors and refusals by cause, the class's predictions")
    ap.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary")
    return ap


def _gradescope(ap, args) -> int:
    from helpers.grading import gradescope
    if args.paths:
        ap.error("--gradescope builds an autograder zip: give no PATH")
    lessons = [x.strip().zfill(2) for x in args.gradescope.split(",") if x.strip()]
    unknown = [x for x in lessons if x not in course.LESSONS]
    if not lessons or unknown:
        ap.error(f"--gradescope: unknown lesson {', '.join(unknown) or '(none)'} "
                 f"(the course has {', '.join(course.LESSONS)})")
    out = Path(args.out or "autograder.zip")
    try:
        config = gradescope.build_zip(lessons, out, Path(args.solutions), args.timeout, args.memory)
    except FileNotFoundError as e:
        ap.error(str(e))
    if not args.quiet:
        print(f"{out}: Gradescope autograder for lesson {', '.join(lessons)} at commit "
              f"{config['commit'][:12]} (torch {config['torch']} CPU)")
    if config["uncommitted_changes"]:
        print("grade: warning: helpers/ has uncommitted changes; the zip holds them, but the "
              "commit it names does not", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.gradescope is not None:
        return _gradescope(ap, args)
    if not args.paths:
        ap.error("give at least one PATH (a notebook or a folder of notebooks)")
    if args.out is None:
        args.out = "grading-output"
    if args.jobs < 1:
        ap.error("--jobs must be at least 1")
    if args.timeout <= 0 or (args.submission_timeout is not None and args.submission_timeout <= 0):
        ap.error("timeouts must be positive")
    if args.seed is not None and not 0 <= args.seed < 2**32:
        ap.error("--seed must be in 0 .. 2**32-1")
    if args.memory < 0.5:
        ap.error("--memory must be at least 0.5 GiB")
    roster = None
    if args.roster:
        try:
            roster = report.read_roster(Path(args.roster))
        except (OSError, ValueError) as e:
            ap.error(f"--roster: {e}")
    lessons = None
    if args.lessons is not None:
        lessons = tuple(dict.fromkeys(x.strip().zfill(2) for x in args.lessons.split(",") if x.strip()))
        unknown = [x for x in lessons if x not in course.LESSONS]
        if not lessons or unknown:
            ap.error(f"--lessons: unknown lesson {', '.join(unknown) or '(none)'} "
                     f"(the course has {', '.join(course.LESSONS)})")
    solutions = Path(args.solutions)
    if not solutions.is_dir():
        ap.error(f"--solutions: no such folder: {solutions}")
    opts = Options(out=Path(args.out), jobs=args.jobs, cell_timeout=args.timeout,
                   run_timeout=args.submission_timeout, solutions=solutions,
                   isolation=args.isolation, memory_gib=args.memory, progress=not args.quiet,
                   seed=args.seed, lessons=lessons, roster=roster)
    try:
        results = grade(args.paths, opts)
    except UsageError as e:
        ap.error(str(e))
    report.feedback_names(results)
    report.write_gradebook(results, opts.out)
    report.write_feedback(results, opts.out)
    report.write_grades(results, opts.out, roster, opts.lessons)
    if args.report:
        from helpers.grading.classreport import write_class_report
        graded = [r for r in results if not opts.lessons or r.lesson in opts.lessons]
        write_class_report(opts.out, [r.predictions for r in graded])
    for line in report.batch_notes(results, opts.lessons, given=lessons is not None, roster=roster):
        print("grade: " + line, file=sys.stderr)
    if not args.quiet:
        print(report.summary(results, opts.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
