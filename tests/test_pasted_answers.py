"""No answer is shown above its exercise (issue 11): code a learner can copy never passes.

Every function and class defined in a lesson body (the code cells above the exercise section)
and every public function and class of the ``helpers`` library is planted, as it is (its name
does not matter: checks receive the object), as the answer of each exercise whose answer it
could be called as. None may pass. A candidate whose signature cannot take the exercise's
arguments is skipped: calling it would only raise ``TypeError``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import signal
import warnings

import matplotlib
import nbformat
import pytest

matplotlib.use("Agg")

import helpers  # noqa: E402
from helpers import cells, course  # noqa: E402
from helpers.checks import core  # noqa: E402

# modules of course tools, not library code a lesson shows
TOOL_MODULES = ("helpers.checks", "helpers.grading", "helpers.build", "helpers.bench",
                "helpers.grade", "helpers.cells", "helpers.course")


def _notebook(lesson: str):
    return nbformat.read(course.SOLUTIONS / f"{course.LESSONS[lesson][0]}.ipynb", as_version=4)


def _answer_shapes(nb) -> dict[str, tuple[str, int]]:
    """``{exercise id: (kind, number of required arguments)}`` from the reference answer cells."""
    out = {}
    for c in nb.cells:
        if cells.role(c) != "answer":
            continue
        ex = core.get(cells.exercise_id(c))
        tree = ast.parse(c.source)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == ex.name:
                args = node.args
                out[ex.id] = ("function", len(args.args) - len(args.defaults))
            elif isinstance(node, ast.ClassDef) and node.name == ex.name:
                init = next((n for n in node.body if isinstance(n, ast.FunctionDef)
                             and n.name == "__init__"), None)
                need = 0 if init is None else len(init.args.args) - 1 - len(init.args.defaults)
                out[ex.id] = ("class", need)
    return out


def _fits(candidate, kind: str, n_required: int) -> bool:
    if kind == "class" and not inspect.isclass(candidate):
        return False
    if kind == "function" and (inspect.isclass(candidate) or not callable(candidate)):
        return False
    try:
        inspect.signature(candidate).bind(*([None] * n_required))
    except (TypeError, ValueError):
        return False
    return True


def _body_definitions(lesson: str) -> dict[str, object]:
    """Functions and classes defined at the top level of the lesson body's code cells."""
    nb = _notebook(lesson)
    start = next(i for i, c in enumerate(nb.cells) if cells.role(c) == "exercises")
    setup = next(c for c in nb.cells[start:] if cells.role(c) == "setup")
    ns: dict = {"__name__": f"lesson{lesson}_body"}
    exec(compile(setup.source, "<setup>", "exec"), ns)  # noqa: S102 - the course's own code
    found = {}
    for c in nb.cells[:start]:
        if c.cell_type != "code" or cells.role(c) in ("colab", "badge"):
            continue
        try:
            tree = ast.parse(c.source)
        except SyntaxError:  # IPython magics: only their Python lines matter here
            tree = ast.parse("\n".join(ln for ln in c.source.splitlines()
                                       if not ln.lstrip().startswith(("%", "!"))))
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                exec(compile(ast.Module([node], []), "<body>", "exec"), ns)  # noqa: S102
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                try:
                    exec(compile(ast.Module([node], []), "<body>", "exec"), ns)  # noqa: S102
                except Exception:  # noqa: BLE001 - a definition needing lesson state is skipped
                    continue
                found[f"{lesson} body: {node.name}"] = ns[node.name]
    return found


def _helpers_definitions() -> dict[str, object]:
    found = {}
    for info in pkgutil.walk_packages(helpers.__path__, "helpers."):
        if info.name.startswith(TOOL_MODULES):
            continue
        mod = importlib.import_module(info.name)
        for name, obj in vars(mod).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                continue
            if inspect.isfunction(obj) or inspect.isclass(obj):
                found[f"{info.name}.{name}"] = obj
    return found


class _Timeout(Exception):
    pass


def _verdict(exercise_id: str, candidate, seconds: int = 30):
    def alarm(*_):
        raise _Timeout

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return core.run(exercise_id, candidate)[0]
    except _Timeout:
        return None  # a candidate that runs this long is not a passing answer
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _plantings(lesson: str, helper_defs: dict):
    shapes = _answer_shapes(_notebook(lesson))
    candidates = {**_body_definitions(lesson), **helper_defs}
    for ex_id, (kind, n) in sorted(shapes.items()):
        for label, obj in candidates.items():
            if _fits(obj, kind, n):
                yield ex_id, label, obj


@pytest.mark.slow
@pytest.mark.parametrize("lesson", list(course.LESSONS))
def test_no_lesson_or_helpers_code_passes_an_exercise(lesson):
    import matplotlib.pyplot as plt

    helper_defs = _helpers_definitions()
    passed, tried = [], 0
    for ex_id, label, obj in _plantings(lesson, helper_defs):
        tried += 1
        v = _verdict(ex_id, obj)
        plt.close("all")
        if v is not None and v.passed:
            passed.append(f"{label} passes {ex_id}")
    assert tried > 0
    assert not passed, "code shown to the learner passes an exercise:\n" + "\n".join(passed)
