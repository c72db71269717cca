"""The batch of submissions ``tests/test_grade.py`` grades, with the rows each must get.

``build(folder, canaries)`` writes every case into ``folder`` and returns
``{file name: Case}``. Expected statuses are per exercise id; ``"*"`` means every exercise
of the lesson; a missing id is not asserted (it depends on the answers of other exercises).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from builders import (EMPTY_NOTEBOOK, colab, dumps, fill, learner_copy, role, solution_sources,
                      v3_bytes)

from helpers import course


@dataclass
class Case:
    expect: dict                          # exercise id (or "*") -> status
    contains: dict = field(default_factory=dict)    # exercise id -> substring of the message
    lesson: str = "01"
    feedback_contains: list = field(default_factory=list)
    sandbox_only: dict = field(default_factory=dict)  # id -> substring, asserted under namespaces
    forbidden: list = field(default_factory=list)     # substrings that must not be in messages


LOOP = "while True:\n    pass"

LOOP_IGNORING_INTERRUPT = """\
import signal
signal.signal(signal.SIGINT, signal.SIG_IGN)
while True:
    try:
        while True:
            pass
    except KeyboardInterrupt:
        pass"""

PATCH_CORE = """\
import helpers.checks.core as core
import helpers.checks as checks
core.Exercise.run_judge = lambda self, record, seed=0: core.Verdict(self.id, "passed")
core.Verdict.text = lambda self: f"{self.exercise} passed"
core.close = lambda *a, **k: True
def polynomial_features(x, degree):
    return x  # wrong on purpose"""

PATCH_LIBS = """\
import builtins, numpy, torch
numpy.allclose = lambda *a, **k: True
numpy.isclose = lambda *a, **k: True
numpy.array_equal = lambda *a, **k: True
torch.allclose = lambda *a, **k: True
builtins.abs = lambda x: 0
def bias_variance(preds, f_true):
    return 123.0, 0.0  # wrong on purpose"""

CUSTOM_EXC = """\
def _swallow(shell, etype, evalue, tb, tb_offset=None):
    print("ex1.2 passed")
get_ipython().set_custom_exc((BaseException,), _swallow)
def fit_polynomial(x, y, degree):
    raise ValueError("nope")"""

FAKE_PRINT = """\
print("ex1.3 passed")
def bias_variance(preds, f_true):
    print("ex1.3 passed")
    return 0.5, 0.5  # wrong on purpose"""

TRANSFORMER = """\
def _rewrite(lines):
    if any("check(" in line for line in lines):
        return ['print("passed")\\n']
    return lines
get_ipython().input_transformers_cleanup.append(_rewrite)
"""

FORGE = """\
import numpy as np
from IPython.display import display
from helpers.checks.core import encode
def polynomial_features(x, degree):
    return np.zeros((len(x), degree + 1))
def check(exercise_id, answer=None):
    data = [{"result": encode(np.ones((6, 4))), "input_changed": False}] * 5
    record = {"exercise": exercise_id, "data": data}
    display({"text/plain": f"{exercise_id} passed"}, raw=True,
            metadata={"course-check": {"exercise": exercise_id, "record": record}})"""

MEMORY_LIST = """\
def fit_polynomial(x, y, degree):
    buf = bytearray(50 * 2**30)
    return buf"""

MEMORY_TORCH = """\
import torch
def bias_variance(preds, f_true):
    return float(torch.empty(50 * 2**30, dtype=torch.float64).sum())"""

NO_CORRECTION = """\
def bias_variance(preds, f_true):
    variance = float(preds.var(axis=0, ddof=1).mean())
    return float(((preds.mean(axis=0) - f_true) ** 2).mean()), variance  # no correction"""

NOT_INVERTED = """\
def dropout_forward(x, p, training, generator=None):
    if not training or p == 0:
        return x, None
    mask = (torch.rand(x.shape, generator=generator) >= p).to(x.dtype)  # not scaled by 1/(1-p)
    return x * mask, mask"""

FLOOD = """\
import signal, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
while True:
    print("still running")
    time.sleep(0.05)"""

SEGFAULT = """\
import ctypes
ctypes.string_at(0)
best_degree = 1"""


def _read_solutions_source() -> str:
    return """\
import os, helpers.course
_seen = []
for _p in [helpers.course.SOLUTIONS / "01_overfitting.ipynb", helpers.course.ROOT / ".git" / "HEAD",
           helpers.course.ROOT / "tests" / "test_grade.py", helpers.course.ROOT / "README.md"]:
    try:
        with open(_p) as _f:
            _f.read(10)
        _seen.append("READ " + _p.name)
    except OSError as _e:
        _seen.append("blocked " + type(_e).__name__)
def fit_polynomial(x, y, degree):
    raise RuntimeError("; ".join(_seen))"""


def _write_outside_source(canaries: list[Path], writes: list[Path]) -> str:
    return f"""\
import os
_done = []
for _p in {[str(p) for p in canaries]!r}:
    try:
        os.remove(_p)
        _done.append("REMOVED")
    except OSError as _e:
        _done.append("kept " + type(_e).__name__)
for _p in {[str(p) for p in writes]!r}:
    try:
        with open(_p, "w") as _f:
            _f.write("hacked")
        _done.append("WROTE")
    except OSError as _e:
        _done.append("nowrite " + type(_e).__name__)
def bias_variance(preds, f_true):
    raise RuntimeError(" | ".join(_done))"""


def _markers(nb, wrong_answer: str):
    nb = copy.deepcopy(nb)
    for c in nb.cells:
        if role(c) == "answer":
            if c.metadata["course"]["exercise"] == "ex1.3":
                c.source = wrong_answer
            c.source = "# NBVAL_SKIP\n# NBVAL_RAISES_EXCEPTION\n#NBVAL_IGNORE_OUTPUT\n" + c.source
            c.metadata["tags"] = ["nbval-skip", "raises-exception"]
        if role(c) == "check":
            c.source = "# NBVAL_SKIP\n" + c.source
            c.metadata["tags"] = ["nbval-skip"]
    return nb


def _edited_checks(nb):
    nb = copy.deepcopy(nb)
    out = []
    for c in nb.cells:
        if role(c) == "check":
            continue  # deleted by the learner
        out.append(c)
        if role(c) == "answer" and c.metadata["course"]["exercise"] == "ex1.3":
            fake = copy.deepcopy(c)
            fake.id = "fake-check"
            fake.metadata = {"course": {"role": "check", "exercise": "ex1.3"}, "tags": ["nbval-check-output"]}
            fake.source = 'print("ex1.3 passed")'
            out.append(fake)
    nb.cells = out
    return nb


def build(folder: Path, canaries: list[Path], writes: list[Path]) -> dict[str, Case]:
    folder.mkdir(parents=True, exist_ok=True)
    sol = solution_sources("01")
    ex = learner_copy("01", "exercises")
    whole = learner_copy("01", "notebooks")
    correct = fill(ex, sol)
    cases: dict[str, Case] = {}

    def put(name: str, data: bytes, case: Case):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        cases[name] = case

    # ---- honest
    put("exercises/01_overfitting.ipynb", dumps(correct), Case({"*": "passed"}))
    put("notebooks/01_overfitting.ipynb", dumps(fill(whole, sol)), Case({"*": "passed"}))
    put("01_partial.ipynb", dumps(fill(ex, sol, {"ex1.3": NO_CORRECTION})),
        Case({"ex1.1": "passed", "ex1.2": "passed", "ex1.3": "failed"}, {"ex1.3": "no correction"}))
    put("01_stubs.ipynb", dumps(ex), Case({"*": "missing"}, {"ex1.1": "not attempted"}))
    put("01_colab.ipynb", dumps(colab(correct)), Case({"*": "passed"},
        feedback_contains=["answer found by the name"]))
    put("01_v3.ipynb", v3_bytes(correct), Case({"*": "passed"}))

    # ---- broken files
    put("01_invalid.ipynb", b'{"cells": [{"cell_type": "code", "source": "def mse(', Case({"*": "error"}, {"ex1.1": "not valid notebook JSON"}))
    put("01_empty_file.ipynb", b"", Case({"*": "error"}, {"ex1.1": "empty"}))
    put("01_no_cells.ipynb", EMPTY_NOTEBOOK, Case({"*": "error"}, {"ex1.1": "no code cells"}))
    put("01_not_a_notebook.ipynb", b"[1, 2, 3]", Case({"*": "error"}, {"ex1.1": "not a Jupyter notebook"}))
    notes = nbformat.v4.new_notebook()
    notes.cells = [nbformat.v4.new_markdown_cell("# My notes"),
                   nbformat.v4.new_code_cell("x = 1\nprint(x)")]
    put("notes.ipynb", dumps(notes), Case({"-": "error"}, {"-": "unknown lesson"}, lesson=""))
    put("03_dropout.ipynb", dumps(correct), Case({"*": "passed"}, feedback_contains=["graded as lesson 01"]))
    foreign = colab(correct)
    foreign.metadata["course"] = {"lesson": "01"}
    for c in foreign.cells:
        if c.cell_type == "code":
            c.source = "def dropout_forward(x, p, training, generator=None):\n    return x, None"
    put("01_foreign.ipynb", dumps(foreign), Case({"*": "missing"}, {"ex1.1": "no answer found"}))

    # ---- hostile
    put("01_loop.ipynb", dumps(fill(ex, sol, {"ex1.4": LOOP})),
        Case({"ex1.1": "passed", "ex1.2": "passed", "ex1.3": "passed", "ex1.4": "timeout"}, {"ex1.4": "timed out"}))
    put("01_loop_no_interrupt.ipynb", dumps(fill(ex, sol, {"ex1.4": LOOP_IGNORING_INTERRUPT})),
        Case({"ex1.1": "passed", "ex1.2": "passed", "ex1.3": "passed", "ex1.4": "timeout"}, {"ex1.4": "timed out"}))
    put("01_memory_segfault.ipynb", dumps(fill(ex, sol, {"ex1.2": MEMORY_LIST, "ex1.3": MEMORY_TORCH, "ex1.4": SEGFAULT})),
        Case({"ex1.1": "passed", "ex1.2": "error", "ex1.3": "error", "ex1.4": "error"},
             {"ex1.2": "MemoryError", "ex1.3": "allocate", "ex1.4": "kernel died"}))
    put("01_exit.ipynb", dumps(fill(ex, sol, {"ex1.1": "import os\nos._exit(1)"})),
        Case({"ex1.1": "error", "ex1.3": "passed"}, {"ex1.1": "kernel died"},
             feedback_contains=["checked again in a fresh kernel"]))
    put("01_fake_print.ipynb", dumps(fill(ex, sol, {"ex1.2": CUSTOM_EXC, "ex1.3": FAKE_PRINT})),
        Case({"ex1.1": "passed", "ex1.2": "error", "ex1.3": "failed"}, {"ex1.2": "ValueError: nope"}))
    put("01_patches.ipynb", dumps(fill(ex, sol, {"ex1.1": PATCH_CORE, "ex1.3": PATCH_LIBS})),
        Case({"ex1.1": "failed", "ex1.3": "failed"},
             feedback_contains=["printed verdict does not match"]))
    put("01_transformer.ipynb", dumps(fill(ex, sol, {"ex1.1": sol["ex1.1"] + "\n" + TRANSFORMER})),
        Case({"*": "error"}, {"ex1.2": "no check record"}))
    put("01_markers.ipynb", dumps(_edited_checks(_markers(fill(ex, sol), "def bias_variance(preds, f_true):\n    return 0.0, 0.0"))),
        Case({"ex1.1": "passed", "ex1.2": "passed", "ex1.3": "failed"}))
    put("01_forged.ipynb", dumps(fill(ex, sol, {"ex1.1": FORGE})),
        Case({"*": "failed"}, feedback_contains=["printed verdict does not match"]))
    put("01_escape.ipynb", dumps(fill(ex, sol, {"ex1.2": _read_solutions_source(),
                                                "ex1.3": _write_outside_source(canaries, writes)})),
        Case({"ex1.1": "passed", "ex1.2": "error", "ex1.3": "error"},
             sandbox_only={"ex1.2": "blocked FileNotFoundError; blocked FileNotFoundError; "
                                    "blocked FileNotFoundError; blocked FileNotFoundError",
                           "ex1.3": "kept"},
             forbidden=["READ", "REMOVED", "WROTE"]))

    # ---- every other lesson that exists: a correct submission; lesson 03 also a wrong one
    for lesson, (name, _) in sorted(course.LESSONS.items()):
        if lesson == "01" or not (course.SOLUTIONS / f"{name}.ipynb").exists():
            continue
        put(f"lessons/{name}.ipynb", dumps(fill(learner_copy(lesson), solution_sources(lesson))),
            Case({"*": "passed"}, lesson=lesson))
        if lesson == "03":
            put("lessons/03_not_inverted.ipynb",
                dumps(fill(learner_copy(lesson), solution_sources(lesson), {"ex3.1": NOT_INVERTED})),
                Case({"ex3.1": "failed"}, lesson=lesson))
    return cases


def solution_snippets(lesson: str = "01") -> list[str]:
    """Distinctive lines of the reference answers (must never appear in feedback)."""
    from builders import solution_bodies
    out = []
    for lines in solution_bodies(lesson).values():
        for ln in lines:
            s = ln.strip()
            if len(s) >= 12 and not s.startswith("#"):
                out.append(s)
    return out

