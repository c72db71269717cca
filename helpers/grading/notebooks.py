"""Reading submissions, finding the learner's answers, and assembling the notebook to run.

Nothing here runs learner code: submissions are parsed as data.
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from helpers import course
from helpers.cells import (HEADER_ROLES, exercise_id, role, section_starts, set_check_tag,
                           solution_lines, stub_source)
from helpers.checks import RECORD_KEY, lesson_exercises

MAX_NOTEBOOK_BYTES = 50_000_000

NBVAL_MARKERS = ("PYTEST_VALIDATE_IGNORE_OUTPUT", "NBVAL_IGNORE_OUTPUT", "NBVAL_CHECK_OUTPUT",
                 "NBVAL_RAISES_EXCEPTION", "NBVAL_SKIP")

GRADER_CELL = """\
# Added by the grader: plain tracebacks, one thread per kernel.
%colors nocolor
import torch as _course_grade_torch
_course_grade_torch.set_num_threads(1)
del _course_grade_torch"""


class SubmissionError(Exception):
    """A submission that cannot be graded at all (message says why)."""


# --------------------------------------------------------------------------- parsing

def parse_notebook(data: bytes):
    """A v4 NotebookNode from raw bytes, or SubmissionError with a learner-readable reason."""
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise SubmissionError(f"the file is too large ({len(data) / 1e6:.0f} MB) to be a notebook")
    if not data.strip():
        raise SubmissionError("the file is empty")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SubmissionError("the file is not a notebook (not UTF-8 text)") from None
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        msg = getattr(e, "msg", type(e).__name__)
        raise SubmissionError(f"the file is not valid notebook JSON ({msg}); it may have been "
                              "truncated or edited by hand") from None
    if not isinstance(raw, dict) or "nbformat" not in raw:
        raise SubmissionError("the file is JSON but not a Jupyter notebook")
    try:
        with warnings.catch_warnings():  # duplicate cell ids, schema quirks: not our business
            warnings.simplefilter("ignore")
            nb = nbformat.reads(text, as_version=4, capture_validation_error={})
    except Exception as e:  # noqa: BLE001 - nbformat raises many kinds on odd input
        raise SubmissionError(f"the notebook could not be read ({type(e).__name__})") from None
    if not isinstance(nb.get("cells"), list):
        raise SubmissionError("the notebook has no cells")
    for c in nb.cells:
        if not isinstance(c, dict) or not isinstance(c.get("source", ""), str):
            raise SubmissionError("the notebook has a malformed cell")
    if not any(c.get("cell_type") == "code" for c in nb.cells):
        raise SubmissionError("the notebook has no code cells")
    return nb


def lesson_of(nb, name: str) -> str | None:
    """The two-digit lesson: notebook metadata ``course.lesson`` first, then the file name."""
    meta = nb.get("metadata", {}).get("course", {}) if isinstance(nb.get("metadata"), dict) else {}
    lesson = meta.get("lesson") if isinstance(meta, dict) else None
    if isinstance(lesson, int):
        lesson = f"{lesson:02d}"
    if isinstance(lesson, str) and lesson in course.LESSONS:
        return lesson
    return course.lesson_of_filename(name)


# --------------------------------------------------------------------------- the lesson

def _stems() -> dict[str, str]:
    """``{"03_dropout": "03", ...}``."""
    return {name: lesson for lesson, (name, _) in course.LESSONS.items()}


def lesson_in_name(name: str) -> str | None:
    """A lesson named anywhere in a file name, as Colab, Jupyter and LMS downloads rename
    them: ``Copy of 03_dropout.ipynb``, ``03_dropout (1).ipynb``,
    ``alice_1234_03_dropout.ipynb``. A lesson's stem (``03_dropout``) first, else a
    two-digit lesson number followed by ``_`` that no other digit touches."""
    base = Path(name).name.lower()
    found = {lesson for stem, lesson in _stems().items() if stem in base}
    if len(found) == 1:
        return found.pop()
    if found:
        return None  # two lessons named: not a guess to make
    nums = {m.group(1) for m in re.finditer(r"(?<!\d)(\d{2})_", base) if m.group(1) in course.LESSONS}
    return nums.pop() if len(nums) == 1 else None


def _texts(nb) -> list[str]:
    out = []
    for c in nb.get("cells", []):
        if isinstance(c, dict) and isinstance(c.get("source"), str):
            out.append(c["source"])
    return out


def lesson_in_cells(nb) -> str | None:
    """The lesson the notebook's Colab badge or setup cell names (``.../03_dropout.ipynb``),
    or Colab's own record of the file name (``metadata.colab.name``)."""
    meta = nb.get("metadata") if isinstance(nb.get("metadata"), dict) else {}
    colab = meta.get("colab") if isinstance(meta.get("colab"), dict) else {}
    if isinstance(colab.get("name"), str):
        lesson = lesson_in_name(colab["name"])
        if lesson:
            return lesson
    found = set()
    for text in _texts(nb)[:6]:  # the badge and setup cells come first
        for m in re.finditer(r"(?:notebooks|exercises|solutions)/(\d{2}_[a-z0-9_]+)\.ipynb", text):
            if m.group(1) in _stems():
                found.add(_stems()[m.group(1)])
    return found.pop() if len(found) == 1 else None


def lesson_by_exercises(nb) -> tuple[str | None, list[str]]:
    """The lesson whose exercises the notebook's cells define (``def dropout_forward``) or
    check (``check("ex3.1")``): the one with the most, when one has clearly the most."""
    code = [c.get("source", "") for c in nb.get("cells", [])
            if isinstance(c, dict) and c.get("cell_type") == "code" and isinstance(c.get("source"), str)]
    scores: dict[str, list[str]] = {}
    for lesson in course.LESSONS:
        try:
            exercises = lesson_exercises(lesson)
        except Exception:  # noqa: BLE001 - a lesson without checks cannot be recognised
            continue
        hits = []
        for ex in exercises:
            if any(f'check("{ex.id}"' in src or f"check('{ex.id}'" in src for src in code) or \
                    (ex.kind != "value" and any(defines(src, ex.name) for src in code)):
                hits.append(ex.name)
        if hits:
            scores[lesson] = hits
    if not scores:
        return None, []
    ranked = sorted(scores.items(), key=lambda kv: -len(kv[1]))
    if len(ranked) > 1 and len(ranked[1][1]) * 2 > len(ranked[0][1]):
        return None, []  # no clear winner
    return ranked[0][0], ranked[0][1]


def infer_lesson(nb, name: str) -> tuple[str | None, str]:
    """``(lesson, rule)`` for a notebook whose metadata and ``NN_`` prefix name no lesson;
    ``rule`` says, for the feedback, how it was found."""
    lesson = lesson_in_name(name)
    if lesson:
        return lesson, f"the file name names lesson {lesson} ({course.LESSONS[lesson][0]})"
    lesson = lesson_in_cells(nb)
    if lesson:
        return lesson, (f"the notebook's Colab badge or setup cell names lesson {lesson} "
                        f"({course.LESSONS[lesson][0]})")
    lesson, names = lesson_by_exercises(nb)
    if lesson:
        shown = ", ".join(f"`{n}`" for n in names[:4]) + (" ..." if len(names) > 4 else "")
        return lesson, f"its cells define lesson {lesson}'s exercises ({shown})"
    return None, ""


# --------------------------------------------------------------------------- reference

@dataclass
class Reference:
    """The parts of a solutions notebook the grader uses."""

    lesson: str
    path: Path
    nb: object                     # the exercise section, as parsed
    exercises: list                # helpers.checks Exercise objects, id order
    stubs: dict = field(default_factory=dict)        # id -> stub source
    solution_lines: dict = field(default_factory=dict)  # id -> lines between the markers


def load_reference(lesson: str, solutions_dir: Path) -> Reference:
    """Read ``solutions_dir/NN_*.ipynb`` (raises SubmissionError when absent or unusable)."""
    name = course.LESSONS.get(lesson, (None,))[0]
    path = solutions_dir / f"{name}.ipynb" if name else None
    if path is None or not path.exists():
        found = sorted(solutions_dir.glob(f"{lesson}_*.ipynb"))
        if not found:
            raise SubmissionError(f"the grader has no reference solutions for lesson {lesson}")
        path = found[0]
    nb = nbformat.read(path, as_version=4)
    exercises = lesson_exercises(lesson)
    if not exercises:
        raise SubmissionError(f"lesson {lesson} has no registered checks")
    starts = section_starts(nb.cells)
    if len(starts) != 1:
        raise SubmissionError(f"the reference for lesson {lesson} has no exercise section")
    ref = Reference(lesson, path, nb, exercises)
    for cell in nb.cells:
        if cell.cell_type == "code" and role(cell) == "answer":
            ex_id = exercise_id(cell)
            ex = next((e for e in exercises if e.id == ex_id), None)
            if ex is None:
                continue
            ref.stubs[ex_id] = stub_source(cell.source, ex_id, ex.name if ex.kind == "value" else None)
            ref.solution_lines[ex_id] = solution_lines(cell.source)
    return ref


# --------------------------------------------------------------------------- answers

@dataclass
class Answer:
    exercise: str
    source: str | None        # None: nothing to run (missing)
    status: str               # "found" or "missing"
    message: str = ""
    how: str = ""             # "metadata", "name", "pattern"


def _norm(src: str) -> str:
    return "\n".join(line.rstrip() for line in src.strip().splitlines())


def _python_of(src: str) -> str | None:
    """Cell source with IPython syntax (magics, ``!cmd``) turned into Python, or None."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
        return TransformerManager().transform_cell(src)
    except Exception:  # noqa: BLE001
        return None


def defines(src: str, name: str) -> bool:
    """Whether the cell's top level defines ``name`` (def, class, or assignment)."""
    for text in (src, _python_of(src)):
        if text is None:
            continue
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
                return True
            targets = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                targets = [node.target]
            for t in targets:
                for sub in ast.walk(t):
                    if isinstance(sub, ast.Name) and sub.id == name:
                        return True
        return False
    return re.search(rf"^(?:async\s+def|def|class)\s+{re.escape(name)}\b|^{re.escape(name)}\s*(?::[^=]*)?=(?!=)",
                     src, re.MULTILINE) is not None


def find_answers(nb, ref: Reference) -> dict[str, Answer]:
    """The learner's answer source for each exercise of the lesson."""
    code = [c for c in nb.cells if c.get("cell_type") == "code"]
    answers = {}
    for ex in ref.exercises:
        stub = _norm(ref.stubs.get(ex.id, ""))
        tagged = [c for c in code if role(c) == "answer" and exercise_id(c) == ex.id]
        meta_cell = tagged[-1] if tagged else None
        if meta_cell is not None and _norm(meta_cell.source) != stub:
            answers[ex.id] = Answer(ex.id, meta_cell.source, "found", how="metadata")
            continue
        # metadata lost (Colab, copy-paste) or the tagged cell is the stub: look by name
        candidates = [c for c in code if c is not meta_cell
                      and role(c) not in ("check", "setup", "colab")
                      and defines(c.source, ex.name)]
        attempted = [c for c in candidates if _norm(c.source) != stub]
        if attempted:
            answers[ex.id] = Answer(ex.id, attempted[-1].source, "found", how="name")
        elif meta_cell is not None or candidates:
            answers[ex.id] = Answer(ex.id, None, "missing",
                                    "not attempted (the answer is still the stub)")
        else:
            what = {"class": "class", "value": "value"}.get(ex.kind, "function")
            answers[ex.id] = Answer(ex.id, None, "missing",
                                    f"no answer found: no cell defines the {what} `{ex.name}`")
    return answers


def neutralise_markers(src: str) -> str:
    """Make nbval comment markers in learner code inert (nbval matches the whole comment)."""
    out = []
    for line in src.split("\n"):
        s = line.strip()
        if s.startswith("#") and s.lstrip("#").strip() in NBVAL_MARKERS:
            line = line + "  (ignored by the grader)"
        out.append(line)
    return "\n".join(out)


# --------------------------------------------------------------------------- assembly

def _reference_check_outputs(outputs) -> list:
    """A check cell's reference outputs with the records removed: text only."""
    kept = []
    for o in outputs or []:
        t = o.get("output_type")
        if t == "stream":
            kept.append(nbformat.v4.new_output("stream", name=o.get("name", "stdout"), text=o.get("text", "")))
        elif t in ("display_data", "execute_result"):
            text = o.get("data", {}).get("text/plain")
            if text is None:
                continue
            if t == "display_data":
                kept.append(nbformat.v4.new_output("display_data", data={"text/plain": text}))
            else:
                kept.append(nbformat.v4.new_output("execute_result", data={"text/plain": text},
                                                   execution_count=o.get("execution_count") or 1))
    return kept


@dataclass
class CellInfo:
    index: int          # nbval's "Cell N" (code cells counted from 0)
    role: str | None
    exercise: str | None


def assemble(ref: Reference, answers: dict[str, Answer]):
    """The notebook the grader runs: grader cell + the reference exercise section, with the
    learner's answers in the answer cells. Returns ``(notebook, [CellInfo...])``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    first = nbformat.v4.new_code_cell(GRADER_CELL)
    first.metadata["course"] = {"role": "grader"}
    cells, infos = [first], [CellInfo(0, "grader", None)]
    start = section_starts(ref.nb.cells)[0]
    for c in ref.nb.cells[start:]:
        if c.cell_type != "code" or role(c) in HEADER_ROLES:
            continue
        kind, ex_id = role(c), exercise_id(c)
        new = nbformat.v4.new_code_cell(c.source)
        new.metadata["course"] = {k: v for k, v in (("role", kind), ("exercise", ex_id)) if v}
        if kind == "answer":
            a = answers.get(ex_id)
            src = a.source if a is not None and a.source is not None else ref.stubs.get(ex_id, c.source)
            new.source = neutralise_markers(src)
        elif kind == "check":
            set_check_tag(new, True)
            new.outputs = _reference_check_outputs(c.get("outputs"))
            new.execution_count = c.get("execution_count") if new.outputs else None
        else:
            new.metadata["tags"] = list(c.metadata.get("tags", []))
            set_check_tag(new, False)
        infos.append(CellInfo(len(cells), kind, ex_id))
        cells.append(new)
    nb.cells = cells
    return nb, infos


def records_in(outputs, ex_id: str) -> list:
    """``(verdict_text, record)`` for each output of a check cell carrying ``ex_id``'s record."""
    found = []
    for o in outputs or []:
        if not isinstance(o, dict) or o.get("output_type") not in ("display_data", "execute_result"):
            continue
        meta = o.get("metadata")
        payload = meta.get(RECORD_KEY) if isinstance(meta, dict) else None
        if not isinstance(payload, dict) or payload.get("exercise") != ex_id:
            continue
        data = o.get("data") if isinstance(o.get("data"), dict) else {}
        found.append((data.get("text/plain"), payload.get("record")))
    return found
