"""The course's notebook format in code: cell roles, solution markers, the check tag, stubs.

This is the table "Cell roles" of CONTRIBUTING.md. The build (:mod:`helpers.build`), the
grader (:mod:`helpers.grading.notebooks`), the benchmark and the tests read notebooks
through this module only; nothing here imports torch, the checks or the build.

A cell's role and exercise id live in ``cell.metadata["course"]``, e.g.
``{"role": "answer", "exercise": "ex1.1"}``. In an answer cell, the lines between
``### BEGIN SOLUTION`` and ``### END SOLUTION`` are the answer; :func:`stub_source` replaces
them with ``raise NotImplementedError("exN.M ...")`` at the same indentation (or
``name = None`` at top level, for an answer that is a value).

The readers are defensive: a learner's submission may carry any JSON in its metadata, and
the grader uses the same functions on it.
"""

from __future__ import annotations

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CHECK_TAG = "nbval-check-output"     # nbval compares the outputs of cells with this tag

#: Every role a cell can have, and what it means. The first four are written by authors in
#: ``solutions/``; the build writes ``badge`` and ``colab``; the grader adds ``grader``.
ROLES = {
    "exercises": "the markdown cell that opens the exercise section (exactly one)",
    "setup": "the first code cell after it: imports, seed, data; kept in every copy",
    "answer": "the one cell the learner writes for exercise `exercise`",
    "check": "right after its answer cell; tagged CHECK_TAG; its output is the verdict",
    "badge": "header cell written by the build: the 'Open in Colab' badge",
    "colab": "header cell written by the build: the Colab set-up cell",
    "grader": "first cell of the notebook the grader assembles",
}
HEADER_ROLES = ("badge", "colab")


class FormatError(ValueError):
    """A notebook (or an answer cell) breaks a rule of the course's format."""


def _course_meta(cell) -> dict:
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    c = meta.get("course") if isinstance(meta, dict) else None
    return c if isinstance(c, dict) else {}


def role(cell) -> str | None:
    """The cell's role (a key of :data:`ROLES`), or None."""
    return _course_meta(cell).get("role")


def exercise_id(cell) -> str | None:
    """The exercise id (``exN.M``) of an answer or check cell, or None."""
    return _course_meta(cell).get("exercise")


def section_starts(cells) -> list[int]:
    """Indexes of the cells that open the exercise section (a valid notebook has one)."""
    return [i for i, c in enumerate(cells) if role(c) == "exercises"]


def stub_source(source: str, ex_id: str, name: str | None = None) -> str:
    """The answer cell's source with every solution region replaced by a stub.

    ``name``: for a top-level value answer, the stub is ``name = None``. Unbalanced or
    nested markers raise :class:`FormatError`.
    """
    out, inside = [], False
    for line in source.split("\n"):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise FormatError(f"{ex_id}: nested {BEGIN}")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            if indent or not name:
                out.append(f'{indent}raise NotImplementedError("{ex_id}: write your answer here")')
            else:
                out.append(f"{name} = None  # {ex_id}: replace None with your answer")
        elif stripped == END:
            if not inside:
                raise FormatError(f"{ex_id}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise FormatError(f"{ex_id}: {BEGIN} without {END}")
    return "\n".join(out)


def solution_lines(source: str) -> list[str]:
    """The lines between the solution markers (the answer itself, never shown to a learner)."""
    inside, lines = False, []
    for line in source.split("\n"):
        if line.strip() == BEGIN:
            inside = True
        elif line.strip() == END:
            inside = False
        elif inside:
            lines.append(line)
    return lines


def without_markers(source: str) -> str:
    """The answer cell's source with the marker lines removed (what a perfect learner writes)."""
    return "\n".join(ln for ln in source.split("\n") if ln.strip() not in (BEGIN, END))


def set_check_tag(cell, want: bool) -> None:
    """Add or remove :data:`CHECK_TAG` in the cell's tags, keeping its other tags."""
    tags = [t for t in cell.metadata.get("tags", []) if t != CHECK_TAG]
    if want:
        tags.append(CHECK_TAG)
    if tags:
        cell.metadata["tags"] = tags
    else:
        cell.metadata.pop("tags", None)


def answer_cells(nb) -> dict:
    """``{exercise id: answer cell}`` of a notebook (the last one wins on duplicates)."""
    return {exercise_id(c): c for c in nb.cells if role(c) == "answer"}
