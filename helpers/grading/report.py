"""Writing the gradebook, the feedback files and the terminal summary."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from helpers import course
from helpers.grading.learners import Roster, read_roster  # noqa: F401 - read_roster: the CLI's
from helpers.grading.runner import Result

COLUMNS = ["submission", "lesson", "exercise", "points", "max_points", "status", "message",
           "feedback", "seed", "learner"]
MAX_MESSAGE = 1000


def _one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", " ", str(text))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 16] + " ... [truncated]"


def _cell(text: str) -> str:
    """A CSV cell that a spreadsheet will not read as a formula."""
    text = _one_line(text)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") and text != "-" else text


def _num(x: float) -> str:
    return f"{x:g}"


def feedback_names(results: list[Result]) -> None:
    """Give each result a unique, file-system-safe feedback file name (deterministic)."""
    used: set = set()
    for r in results:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(r.submission).stem).strip("._") or "submission"
        name = stem
        if name.lower() in used:
            parent = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(r.submission).parent.name).strip("._")
            name = f"{parent}__{stem}" if parent else stem
        k = 2
        base = name
        while name.lower() in used:
            name = f"{base}-{k}"
            k += 1
        used.add(name.lower())
        r.feedback = name + ".md"


def write_gradebook(results: list[Result], out: Path) -> Path:
    path = out / "gradebook.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in results:
            for row in r.rows:
                w.writerow([_cell(row.submission), row.lesson, row.exercise, _num(row.points),
                            _num(row.max_points), row.status, _cell(gradebook_message(r, row)),
                            f"feedback/{r.feedback}", "" if r.seed is None else str(r.seed),
                            _cell(r.learner)])
    return path


def gradebook_message(r: Result, row) -> str:
    """A row's message for the instructor: the verdict, then ``same file as <other>`` when
    another learner handed in the same bytes (not in the learner's feedback file)."""
    if not r.same_as:
        return row.message
    shown = r.same_as[:3] + ([f"{len(r.same_as) - 3} more"] if len(r.same_as) > 3 else [])
    flag = "same file as " + ", ".join(shown)
    return f"{row.message} [{flag}]" if row.message else flag


def _md(text: str) -> str:
    """Learner-influenced text, safe to put in Markdown (no HTML, no line breaks)."""
    return _one_line(text).replace("<", "&lt;").replace(">", "&gt;")


ICON = {"passed": "passed", "failed": "FAILED", "error": "ERROR", "timeout": "TIMEOUT",
        "missing": "missing"}


def feedback_text(r: Result) -> str:
    title = course.LESSONS.get(r.lesson, (None, ""))[1]
    lines = [f"# Feedback: {_md(r.submission)}", ""]
    if r.lesson:
        lines.append(f"Lesson {r.lesson}" + (f": {title}" if title else ""))
    lines += [f"Score: **{_num(r.points)} / {_num(r.max_points)}**", ""]
    for n in r.notes:
        lines.append(f"- Note: {_md(n)}")
    if r.notes:
        lines.append("")
    lines += ["| exercise | status | points |", "|---|---|---|"]
    for row in r.rows:
        lines.append(f"| {row.exercise} | {row.status} | {_num(row.points)} / {_num(row.max_points)} |")
    lines.append("")
    for row in r.rows:
        name = r.names.get(row.exercise)
        head = f"## {row.exercise}" + (f" `{name}`" if name else "") + f": {ICON.get(row.status, row.status)}"
        lines += [head, ""]
        if row.status == "passed":
            lines.append("Correct." + (f" {_md(row.message)}" if row.message else ""))
        else:
            lines.append(_md(row.message) or row.status)
        for n in r.exercise_notes.get(row.exercise, []):
            lines.append("")
            lines.append(f"Note: {_md(n)}")
        lines.append("")
    if r.predictions:
        from helpers.predict import summary as prediction_summary
        ps = prediction_summary(r.predictions)
        lines += ["## Your predictions (they never cost points)", "",
                  f"{ps['n']} resolved: mean Brier score {ps['brier']:.3f} (a coin scores 0.250), "
                  f"mean log score {ps['log_score']:.3f} (a coin: 0.693).", ""]
    lines += ["---", f"isolation: {r.isolation or 'none (not run)'}", ""]
    return "\n".join(lines)


def write_feedback(results: list[Result], out: Path) -> None:
    folder = out / "feedback"
    folder.mkdir(parents=True, exist_ok=True)
    for r in results:
        (folder / r.feedback).write_text(feedback_text(r), encoding="utf-8")


def summary(results: list[Result], out: Path) -> str:
    """The terminal summary: per exercise for one submission, per submission for a batch."""
    lines = []
    if len(results) == 1:
        r = results[0]
        lines.append(f"{r.submission} (lesson {r.lesson or '?'}): {_num(r.points)} / {_num(r.max_points)}")
        for row in r.rows:
            msg = _one_line(row.message, 200)
            lines.append(f"  {row.exercise:<7} {row.status:<8} {_num(row.points)}/{_num(row.max_points)}"
                         + (f"  {msg}" if msg and row.status != "passed" else ""))
    else:
        width = min(60, max([len(r.submission) for r in results] + [10]))
        lines.append(f"{'submission':<{width}}  lesson  score    passed failed error timeout missing")
        for r in results:
            counts = {s: sum(1 for row in r.rows if row.status == s)
                      for s in ("passed", "failed", "error", "timeout", "missing")}
            sub = r.submission if len(r.submission) <= width else "..." + r.submission[-(width - 3):]
            score = f"{_num(r.points)}/{_num(r.max_points)}"
            lines.append(f"{sub:<{width}}  {r.lesson or '?':<6}  {score:<7}  {counts['passed']:>6} "
                         f"{counts['failed']:>6} {counts['error']:>5} {counts['timeout']:>7} {counts['missing']:>7}")
    lines.append(f"gradebook: {out / 'gradebook.csv'}   grades: {out / 'grades.csv'}   "
                 f"feedback: {out / 'feedback'}/")
    seeds = sorted({r.seed for r in results if r.seed is not None})
    if seeds:
        lines.append(f"case seed: {seeds[0]} (--seed {seeds[0]} grades again on the same inputs)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- grades.csv

def grades_table(results: list[Result], roster: dict[str, str] | None = None,
                 lessons=None):
    """The wide table: ``(header, rows)``, one row per learner.

    Columns: ``learner``, ``student_id``, one per exercise (points), one per lesson
    (``lesson_NN``, points), ``total``, ``max_total``, ``percentage``, then one per lesson
    (``predictions_NN``: how many predictions the counted submission resolved; never points). Every lesson of the
    assignment (``lessons``; default: every lesson graded in the run) counts for every learner
    (no submission: 0 points); a submission of another lesson changes no column. When a learner
    submitted one lesson more than once, the submission with the most points counts. Rows: the
    roster's learners in its order, then every learner the roster does not hold (a file the
    roster could not match has a row of its own).
    """
    from helpers.checks import lesson_exercises

    if lessons is None:
        lessons = sorted({r.lesson for r in results if r.lesson in course.LESSONS})
    lessons = sorted(set(lessons))
    exercises: dict[str, list] = {}
    for lesson in lessons:
        try:
            exercises[lesson] = [(e.id, e.points) for e in lesson_exercises(lesson)]
        except Exception:  # noqa: BLE001 - fall back to the rows' own ids
            ids = {}
            for r in results:
                for row in r.rows:
                    if r.lesson == lesson and row.exercise != "-":
                        ids[row.exercise] = row.max_points
            exercises[lesson] = list(ids.items())
    best: dict[tuple, Result] = {}
    learners: list[str] = list(roster or {})
    for r in results:
        who = r.learner or Path(r.submission).stem
        if who not in learners:
            learners.append(who)
        if r.lesson not in exercises:
            continue
        key = (who, r.lesson)
        if key not in best or r.points >= best[key].points:
            best[key] = r
    ex_cols = [e for lesson in lessons for e, _ in exercises[lesson]]
    header = (["learner", "student_id"] + ex_cols + [f"lesson_{l}" for l in lessons]
              + ["total", "max_total", "percentage"] + [f"predictions_{l}" for l in lessons])
    max_total = sum(p for lesson in lessons for _, p in exercises[lesson])
    table = []
    for who in learners:
        pts: dict[str, float] = {}
        per_lesson = {}
        for lesson in lessons:
            r = best.get((who, lesson))
            got = {row.exercise: row.points for row in r.rows} if r else {}
            for e, _ in exercises[lesson]:
                pts[e] = float(got.get(e, 0.0))
            per_lesson[lesson] = sum(pts[e] for e, _ in exercises[lesson])
        total = sum(per_lesson.values())
        pct = 100.0 * total / max_total if max_total else 0.0
        made = [len(best[(who, l)].predictions) if (who, l) in best else 0 for l in lessons]
        table.append([who, (roster or {}).get(who, "")] + [pts[e] for e in ex_cols]
                     + [per_lesson[l] for l in lessons] + [total, max_total, round(pct, 2)] + made)
    return header, table


def batch_notes(results: list[Result], lessons, given: bool, roster=None) -> list[str]:
    """Lines for the instructor (stderr): the assignment, files of other lessons, files the
    roster could not match, files handed in by several learners."""
    out = []
    lessons = tuple(lessons or ())
    others = [r for r in results if r.lesson and r.lesson not in lessons]
    seen = sorted({r.lesson for r in results if r.lesson})
    if not given and (len(seen) > 1 or others):
        out.append("assignment: lesson " + (", ".join(lessons) or "(none)") + " (the lessons most "
                   "learners handed in; --lessons chooses)")
    for r in others:
        out.append(f"{r.submission}: lesson {r.lesson}, not in this assignment: an error row, "
                   "not graded")
    if roster is not None:
        for r in results:
            m = r.match
            if m is not None and m.entry is None:
                why = m.how + (f" ({', '.join(m.candidates)})" if m.candidates else "")
                out.append(f"not in the roster: {r.submission}: {why}; it has a row of its own "
                           f"in grades.csv, as {r.learner!r}")
        matched = {r.learner for r in results if r.match is not None and r.match.entry is not None}
        missing = [name for name in roster if name not in matched]
        if missing and len(missing) < len(roster):
            out.append(f"no submission from {len(missing)} roster learner(s): "
                       + ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else ""))
    done = set()
    for r in results:
        if r.same_as and r.submission not in done:
            group = [r.submission] + r.same_as
            done.update(group)
            out.append("same file (both graded, flagged in gradebook.csv): " + ", ".join(group))
    return out


def write_grades(results: list[Result], out: Path, roster: dict[str, str] | None = None,
                 lessons=None) -> Path:
    """``DIR/grades.csv``: the wide table of :func:`grades_table`, for an LMS import."""
    header, table = grades_table(results, roster, lessons)
    path = out / "grades.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for row in table:
            w.writerow([_cell(row[0]), _cell(row[1])] + [_num(v) for v in row[2:]])
    return path
