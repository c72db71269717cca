"""Writing the gradebook, the feedback files and the terminal summary."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from helpers import course
from helpers.grading.runner import Result

COLUMNS = ["submission", "lesson", "exercise", "points", "max_points", "status", "message",
           "feedback", "seed"]
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
                            _num(row.max_points), row.status, _cell(row.message),
                            f"feedback/{r.feedback}", "" if r.seed is None else str(r.seed)])
    return path


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
    lines.append(f"gradebook: {out / 'gradebook.csv'}   feedback: {out / 'feedback'}/")
    return "\n".join(lines)
