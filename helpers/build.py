"""Generate ``notebooks/`` and ``exercises/`` from ``solutions/`` (the single source).

    python -m helpers.build            # regenerate every lesson
    python -m helpers.build --check    # fail (exit 1) when a generated file is stale
    python -m helpers.build --execute solutions/01_overfitting.ipynb   # re-run, keep outputs

Cell roles live in ``cell.metadata["course"]``: ``{"role": "answer", "exercise": "ex1.1"}``,
``{"role": "check", "exercise": "ex1.1"}``, ``{"role": "exercises"}`` (the markdown cell that
opens the exercise section) and ``{"role": "setup"}`` (the exercise section's own setup).
The build also writes two header cells into every notebook, solutions included: the
"Open in Colab" badge and the Colab setup cell, both made from :mod:`helpers.course`.

- ``notebooks/NN_*.ipynb``: the whole lesson, answers replaced by stubs, no outputs.
- ``exercises/NN_*.ipynb``: the header cells and the exercise section alone, stubs, no outputs.

Every notebook the build writes is clean: no ``metadata.execution`` (nbclient's timestamps)
in any cell, no saved widget state; ``--execute`` runs the kernel with progress bars off
(``TQDM_DISABLE=1``). ``--check`` ignores execution timestamps in the files it compares
(the next build removes them) and fails on any other difference.

The notebook format itself (roles, solution markers, check tag, stubs) lives in
:mod:`helpers.cells`.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

import nbformat

from helpers import course
from helpers.cells import (BEGIN, END, CHECK_TAG, HEADER_ROLES, FormatError,  # noqa: F401
                           exercise_id, role, section_starts, set_check_tag, stub_source)

COLAB_SETUP = '''\
# Setup. On Colab this installs the course's `helpers` package (torch is already there and
# is left alone); on your own machine, where `helpers` is installed, it does nothing.
import os, sys
if "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ:
    try:
        import helpers
    except ImportError:
        import subprocess
        repo = os.environ.get("COURSE_REPO_URL", "{repo_url}")
        print("Installing the course helpers from", repo)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "git+" + repo], check=True)
        import helpers'''


#: A solutions notebook breaks a rule of the build (message says which).
BuildError = FormatError


def header_cells(relpath: str) -> list:
    """The badge cell and the Colab setup cell for the notebook at ``relpath``."""
    badge = nbformat.v4.new_markdown_cell(course.colab_badge(relpath))
    badge.metadata["course"] = {"role": "badge"}
    badge.id = "course-badge"
    setup = nbformat.v4.new_code_cell(COLAB_SETUP.format(repo_url=course.REPO_URL))
    setup.metadata["course"] = {"role": "colab"}
    setup.id = "course-colab-setup"
    return [badge, setup]


def _clear(cell) -> None:
    if cell.cell_type == "code":
        cell.outputs = []
        cell.execution_count = None


def validate(nb, name: str) -> dict:
    """Check the rules of a solutions notebook; returns ``{exercise_id: answer cell}``."""
    from helpers.checks import lesson_exercises

    lesson = nb.metadata.get("course", {}).get("lesson")
    if lesson != name[:2]:
        raise BuildError(f"{name}: metadata course.lesson is {lesson!r}, expected {name[:2]!r}")
    starts = section_starts(nb.cells)
    if len(starts) != 1:
        raise BuildError(f"{name}: needs exactly one cell with role 'exercises', found {len(starts)}")
    code_after = [c for c in nb.cells[starts[0]:] if c.cell_type == "code"]
    if not code_after or role(code_after[0]) != "setup":
        raise BuildError(f"{name}: the first code cell of the exercise section must have role 'setup'")
    answers: dict = {}
    for i, c in enumerate(nb.cells):
        if role(c) == "answer":
            ex = exercise_id(c)
            if ex in answers:
                raise BuildError(f"{name}: two answer cells for {ex}")
            if i < starts[0]:
                raise BuildError(f"{name}: answer cell {ex} is above the exercise section")
            if BEGIN not in c.source:
                raise BuildError(f"{name}: answer cell {ex} has no {BEGIN} marker")
            nxt = [d for d in nb.cells[i + 1:] if d.cell_type == "code"][:1]
            if not nxt or role(nxt[0]) != "check" or exercise_id(nxt[0]) != ex:
                raise BuildError(f"{name}: answer cell {ex} must be followed by its check cell")
            answers[ex] = c
        if role(c) == "check" and f'"{exercise_id(c)}"' not in c.source:
            raise BuildError(f"{name}: check cell for {exercise_id(c)} does not name it")
    registered = {e.id for e in lesson_exercises(name[:2])}
    if registered != set(answers):
        raise BuildError(f"{name}: answer cells {sorted(answers)} but registered checks "
                         f"{sorted(registered)}")
    return answers


#: Environment of the kernel that ``--execute`` starts: saved outputs get no progress bars and
#: no personal prediction record (helpers.predict).
KERNEL_ENV = {"TQDM_DISABLE": "1", "COURSE_PREDICTIONS": "off"}
#: Run in that kernel before the notebook: tqdm's notebook bar (what ``tqdm.auto`` gives in a
#: kernel) sets ``disable=False`` itself and ignores TQDM_DISABLE; make it default to off too.
KERNEL_STARTUP = ("import functools as _ft, tqdm.notebook as _tn; _tn.tqdm_notebook.__init__ = "
                  "_ft.partialmethod(_tn.tqdm_notebook.__init__, disable=True); del _ft, _tn")


def strip_timing(nb):
    """Remove ``metadata.execution`` (execution timestamps) from every cell, in place."""
    for c in nb.cells:
        c.get("metadata", {}).pop("execution", None)
    return nb


def normalise_solution(nb, name: str):
    """The solutions notebook with canonical header cells, check tags and metadata."""
    nb = copy.deepcopy(nb)
    body = [c for c in nb.cells if role(c) not in HEADER_ROLES]
    old_setup = next((c for c in nb.cells if role(c) == "colab"), None)
    head = header_cells(f"solutions/{name}")
    if old_setup is not None and old_setup.get("source") == head[1].source:
        head[1].outputs, head[1].execution_count = old_setup.outputs, old_setup.execution_count
    nb.cells = head + body
    for c in nb.cells:
        set_check_tag(c, role(c) == "check")
    strip_timing(nb)
    nb.metadata.pop("widgets", None)   # saved widget state is noise in the source
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nb.metadata.setdefault("language_info", {"name": "python"})
    return nb


def student_copy(nb, name: str, folder: str):
    """The learner's copy for ``folder`` (``notebooks`` or ``exercises``)."""
    from helpers.checks import get

    nb = copy.deepcopy(nb)
    body = [c for c in nb.cells if role(c) not in HEADER_ROLES]
    if folder == "exercises":
        start = next(i for i, c in enumerate(body) if role(c) == "exercises")
        body = body[start:]
    for c in body:
        _clear(c)
        if role(c) == "answer":
            ex = get(exercise_id(c))
            c.source = stub_source(c.source, ex.id, ex.name if ex.kind == "value" else None)
    nb.cells = header_cells(f"{folder}/{name}") + body
    for c in nb.cells:
        _clear(c)
    strip_timing(nb)
    nb.metadata.pop("widgets", None)
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def dumps(nb) -> str:
    return nbformat.writes(nb, version=4) + "\n"


def plan(root: Path = course.ROOT, lessons=None) -> dict[Path, str]:
    """Every file the build writes (for ``lessons``, e.g. ``["03"]``; all when None), with its content."""
    files: dict[Path, str] = {}
    sources = sorted((root / "solutions").glob("[0-9][0-9]_*.ipynb"))
    if lessons:
        sources = [p for p in sources if p.name[:2] in lessons]
    for path in sources:
        nb = nbformat.read(path, as_version=4)
        name = path.name
        validate(nb, name)
        sol = normalise_solution(nb, name)
        files[path] = dumps(sol)
        for folder in ("notebooks", "exercises"):
            files[root / folder / name] = dumps(student_copy(sol, name, folder))
    return files


def execute(path: Path, timeout: int = 600) -> None:
    """Run a solutions notebook top to bottom in a fresh kernel and save it with its outputs."""
    nb = nbformat.read(path, as_version=4)
    nb = normalise_solution(nb, path.name)
    run_notebook(nb, path.parent, timeout)
    path.write_text(dumps(nb))


def run_notebook(nb, cwd: Path, timeout: int = 600):
    """Execute ``nb`` in place in a fresh kernel started in ``cwd``, with :data:`KERNEL_ENV`;
    the cells keep no execution timestamps."""
    from nbclient import NotebookClient

    NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                   extra_arguments=[f"--IPKernelApp.exec_lines={KERNEL_STARTUP!r}"],
                   resources={"metadata": {"path": str(cwd)}}
                   ).execute(env={**os.environ, **KERNEL_ENV})
    return strip_timing(nb)


def same_content(current: str | None, text: str) -> bool:
    """Whether the file text ``current`` is what the build writes (``text``), execution
    timestamps in ``current`` aside."""
    if current == text:
        return True
    if current is None:
        return False
    try:
        nb = nbformat.reads(current, as_version=4)
    except Exception:  # noqa: BLE001 - unreadable: stale
        return False
    return dumps(strip_timing(nb)) == text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m helpers.build", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="fail when a generated file is stale")
    ap.add_argument("--execute", nargs="*", metavar="NOTEBOOK",
                    help="re-run these solutions notebooks (those of --lesson, or all, when none "
                         "given) before building")
    ap.add_argument("--lesson", action="append", metavar="NN",
                    help="only this lesson (repeatable); default: every lesson")
    args = ap.parse_args(argv)
    if args.execute is not None:
        targets = [Path(p) for p in args.execute] or sorted(
            p for p in course.SOLUTIONS.glob("[0-9][0-9]_*.ipynb")
            if not args.lesson or p.name[:2] in args.lesson)
        for p in targets:
            print(f"executing {p} ...", flush=True)
            execute(p)
        if args.execute and not args.lesson:      # then build just those lessons
            args.lesson = sorted({p.name[:2] for p in targets})
    try:
        files = plan(lessons=args.lesson)
    except BuildError as e:
        print(f"build error: {e}", file=sys.stderr)
        return 2
    stale, timed = [], []
    for path, text in files.items():
        current = path.read_text() if path.exists() else None
        if current != text:
            if args.check and same_content(current, text):
                timed.append(path)
                continue
            stale.append(path)
            if not args.check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    expected = {p for p in files if p.parent.name in ("notebooks", "exercises")}
    for folder in ("notebooks", "exercises"):
        for p in sorted((course.ROOT / folder).glob("*.ipynb")):
            if p not in expected and (not args.lesson or p.name[:2] in args.lesson):
                stale.append(p)
                if not args.check:
                    p.unlink()
    rel = [str(p.relative_to(course.ROOT)) for p in stale]
    if args.check:
        if stale:
            print("stale generated files (run `python -m helpers.build`):\n  " + "\n  ".join(rel))
            return 1
        print(f"in sync: {len(files)} notebooks"
              + (f" ({len(timed)} still carry execution timestamps; `python -m helpers.build` "
                 "removes them)" if timed else ""))
        return 0
    print(f"built {len(files)} notebooks" + (f"; updated: {', '.join(rel)}" if rel else "; nothing changed"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
